// k8s-validate decodes every object of a multi-document YAML stream (helm template's output)
// into its Kubernetes API type, strictly: an unknown or duplicated field, a wrong type, or a kind
// the API does not have fails it. It then checks what strict decoding cannot see but the API
// server would reject or the chart relies on: names, labels, port names, and that selectors
// and named ports refer to something that exists.
//
// Usage: k8s-validate [FILE...]   (no FILE: standard input). Prints one line per object; exit 1
// if any object is invalid.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
)

func main() {
	scheme := runtime.NewScheme()
	must(clientgoscheme.AddToScheme(scheme))
	must(monitoringv1.AddToScheme(scheme))
	// Strict: unknown and duplicate fields are errors, not silently dropped.
	decoder := json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme, scheme, json.SerializerOptions{Yaml: true, Strict: true})

	var inputs []namedReader
	if len(os.Args) > 1 {
		for _, name := range os.Args[1:] {
			f, err := os.Open(name)
			must(err)
			defer f.Close()
			inputs = append(inputs, namedReader{name, f})
		}
	} else {
		inputs = append(inputs, namedReader{"<stdin>", os.Stdin})
	}

	var objects []object
	failed := false
	for _, in := range inputs {
		reader := utilyaml.NewYAMLReader(bufio.NewReader(in.r))
		for index := 0; ; index++ {
			doc, err := reader.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			must(err)
			if isEmpty(doc) {
				continue
			}
			where := fmt.Sprintf("%s#%d", in.name, index)
			obj, gvk, err := decoder.Decode(doc, nil, nil)
			if err != nil {
				fmt.Printf("INVALID %s: %v\n", where, err)
				failed = true
				continue
			}
			meta, ok := obj.(metav1.Object)
			if !ok {
				fmt.Printf("INVALID %s: %s has no object metadata\n", where, gvk.Kind)
				failed = true
				continue
			}
			objects = append(objects, object{where: where, kind: gvk.Kind, meta: meta, obj: obj})
		}
	}
	for _, o := range objects {
		problems := checkMeta(o.meta)
		problems = append(problems, checkObject(o.obj, objects)...)
		if len(problems) > 0 {
			fmt.Printf("INVALID %s %s/%s: %s\n", o.where, o.kind, o.meta.GetName(), strings.Join(problems, "; "))
			failed = true
			continue
		}
		fmt.Printf("ok %s/%s\n", o.kind, o.meta.GetName())
	}
	if len(objects) == 0 {
		fmt.Println("INVALID: no objects")
		failed = true
	}
	if failed {
		os.Exit(1)
	}
}

type namedReader struct {
	name string
	r    io.Reader
}

type object struct {
	where string
	kind  string
	meta  metav1.Object
	obj   runtime.Object
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "k8s-validate:", err)
		os.Exit(2)
	}
}

// isEmpty: a document of comments and blank lines only (helm emits them for disabled templates).
func isEmpty(doc []byte) bool {
	for _, line := range bytes.Split(doc, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) > 0 && line[0] != '#' && !bytes.Equal(line, []byte("---")) {
			return false
		}
	}
	return true
}

func checkMeta(meta metav1.Object) []string {
	var problems []string
	for _, msg := range validation.IsDNS1123Subdomain(meta.GetName()) {
		problems = append(problems, "metadata.name: "+msg)
	}
	if meta.GetNamespace() != "" {
		for _, msg := range validation.IsDNS1123Label(meta.GetNamespace()) {
			problems = append(problems, "metadata.namespace: "+msg)
		}
	}
	problems = append(problems, checkLabels("metadata.labels", meta.GetLabels())...)
	for key := range meta.GetAnnotations() {
		for _, msg := range validation.IsQualifiedName(key) {
			problems = append(problems, fmt.Sprintf("metadata.annotations[%s]: %s", key, msg))
		}
	}
	return problems
}

func checkLabels(path string, labels map[string]string) []string {
	var problems []string
	for key, value := range labels {
		for _, msg := range validation.IsQualifiedName(key) {
			problems = append(problems, fmt.Sprintf("%s[%s]: %s", path, key, msg))
		}
		for _, msg := range validation.IsValidLabelValue(value) {
			problems = append(problems, fmt.Sprintf("%s[%s]: %s", path, key, msg))
		}
	}
	return problems
}

func checkObject(obj runtime.Object, all []object) []string {
	switch o := obj.(type) {
	case *appsv1.DaemonSet:
		return checkDaemonSet(o)
	case *corev1.Service:
		return checkService(o, all)
	case *monitoringv1.ServiceMonitor:
		return checkServiceMonitor(o, all)
	}
	return nil
}

func checkDaemonSet(ds *appsv1.DaemonSet) []string {
	var problems []string
	tpl := ds.Spec.Template
	problems = append(problems, checkLabels("spec.template.metadata.labels", tpl.Labels)...)
	if ds.Spec.Selector == nil || len(ds.Spec.Selector.MatchLabels) == 0 {
		problems = append(problems, "spec.selector: required")
	} else if !subset(ds.Spec.Selector.MatchLabels, tpl.Labels) {
		problems = append(problems, "spec.selector does not match spec.template.metadata.labels")
	}
	if len(tpl.Spec.Containers) == 0 {
		problems = append(problems, "spec.template.spec.containers: required")
	}
	volumes := map[string]bool{}
	for _, v := range tpl.Spec.Volumes {
		if volumes[v.Name] {
			problems = append(problems, fmt.Sprintf("volume %q: duplicate name", v.Name))
		}
		volumes[v.Name] = true
	}
	for _, c := range tpl.Spec.Containers {
		if c.Image == "" || strings.HasSuffix(c.Image, ":") {
			problems = append(problems, fmt.Sprintf("container %q: image %q has no tag", c.Name, c.Image))
		}
		ports := map[string]bool{}
		for _, p := range c.Ports {
			for _, msg := range validation.IsValidPortName(p.Name) {
				problems = append(problems, fmt.Sprintf("container %q port %q: %s", c.Name, p.Name, msg))
			}
			if ports[p.Name] {
				problems = append(problems, fmt.Sprintf("container %q port %q: duplicate name", c.Name, p.Name))
			}
			ports[p.Name] = true
		}
		for name, probe := range map[string]*corev1.Probe{"startupProbe": c.StartupProbe, "readinessProbe": c.ReadinessProbe, "livenessProbe": c.LivenessProbe} {
			if probe != nil && probe.HTTPGet != nil && probe.HTTPGet.Port.StrVal != "" && !ports[probe.HTTPGet.Port.StrVal] {
				problems = append(problems, fmt.Sprintf("container %q %s: no port named %q", c.Name, name, probe.HTTPGet.Port.StrVal))
			}
		}
		names := map[string]bool{}
		for _, e := range c.Env {
			if names[e.Name] {
				problems = append(problems, fmt.Sprintf("container %q env %q: duplicate name", c.Name, e.Name))
			}
			names[e.Name] = true
		}
		for _, m := range c.VolumeMounts {
			if !volumes[m.Name] {
				problems = append(problems, fmt.Sprintf("container %q volumeMount %q: no such volume", c.Name, m.Name))
			}
		}
	}
	return problems
}

// checkService: the selector picks the pods of a workload in the same stream, and every named
// targetPort is a port those pods declare.
func checkService(svc *corev1.Service, all []object) []string {
	var problems []string
	var pods *corev1.PodTemplateSpec
	for _, o := range all {
		if ds, ok := o.obj.(*appsv1.DaemonSet); ok && ds.Namespace == svc.Namespace && subset(svc.Spec.Selector, ds.Spec.Template.Labels) {
			pods = &ds.Spec.Template
		}
	}
	if pods == nil {
		return []string{"spec.selector matches no workload in this stream"}
	}
	declared := map[string]bool{}
	for _, c := range pods.Spec.Containers {
		for _, p := range c.Ports {
			declared[p.Name] = true
		}
	}
	for _, p := range svc.Spec.Ports {
		for _, msg := range validation.IsValidPortName(p.Name) {
			problems = append(problems, fmt.Sprintf("port %q: %s", p.Name, msg))
		}
		if name := p.TargetPort.StrVal; name != "" && !declared[name] {
			problems = append(problems, fmt.Sprintf("port %q: targetPort %q is no container port", p.Name, name))
		}
	}
	return problems
}

// checkServiceMonitor: it selects a Service of the stream and scrapes ports that Service has.
func checkServiceMonitor(sm *monitoringv1.ServiceMonitor, all []object) []string {
	var problems []string
	var svc *corev1.Service
	for _, o := range all {
		if s, ok := o.obj.(*corev1.Service); ok && subset(sm.Spec.Selector.MatchLabels, s.Labels) {
			svc = s
		}
	}
	if svc == nil {
		return []string{"spec.selector matches no Service in this stream"}
	}
	ports := map[string]bool{}
	for _, p := range svc.Spec.Ports {
		ports[p.Name] = true
	}
	for i, e := range sm.Spec.Endpoints {
		if !ports[e.Port] {
			problems = append(problems, fmt.Sprintf("spec.endpoints[%d]: Service %s has no such port", i, svc.Name))
		}
	}
	return problems
}

func subset(want, have map[string]string) bool {
	if len(want) == 0 {
		return false
	}
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}
