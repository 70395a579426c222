// OTTL boolean conditions as the Collector's filter processor evaluates them (see docs/ottl.md).
export {
  compileCondition, compileConditions, inferContext, ConditionSequence, OttlCompileError, CONTEXT_INFER_PRIORITY, OTTL_DOCS,
  type CompiledCondition, type CompileOptions, type ErrorMode, type OttlContext, type OttlField, type OttlFieldTable,
  type OttlFunction, type OttlParam, type OttlPathRef, type PathContextMode,
} from './compile';
export { STANDARD_CONVERTERS, COLLECTOR_CONVERTERS } from './functions';
export { OttlSyntaxError, parseCondition, tokenize } from './parser';
export {
  OttlDuration, OttlId, OttlRuntimeError, OttlTime, OttlTypeError, compareValues, deepEqual, type CompareOp, type OttlValue, type RawStringEquals,
} from './values';
export * from './contexts';
