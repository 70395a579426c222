// The walkthrough's backend: a Go HTTP file server on :8080.
package main

import (
	"fmt"
	"net/http"
)

func main() {
	http.Handle("/", http.FileServer(http.Dir(".")))
	server := http.Server{Addr: ":8080"}
	fmt.Println("Starting server on :8080")
	panic(server.ListenAndServe())
}
