// KeyValues in the object form protobufjs's fromObject takes (OTLP/JSON's field names), for the
// requests tests build. bench/obi.ts has its own (bench does not import test/).

export const str = (key: string, value: string) => ({ key, value: { stringValue: value } });
export const int = (key: string, value: number) => ({ key, value: { intValue: value } });
export const dbl = (key: string, value: number) => ({ key, value: { doubleValue: value } });
export const bool = (key: string, value: boolean) => ({ key, value: { boolValue: value } });
