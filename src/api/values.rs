//! Protobuf well-known values as the domain holds them: `google.protobuf.Struct` ↔ a JSON
//! object, `google.protobuf.Timestamp` ↔ Unix epoch seconds.

use std::collections::BTreeMap;

use prost_types::{Struct, Timestamp, value::Kind};

pub fn struct_from_json(map: &serde_json::Map<String, serde_json::Value>) -> Struct {
    Struct {
        fields: map
            .iter()
            .map(|(k, v)| (k.clone(), value_from_json(v)))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn value_from_json(value: &serde_json::Value) -> prost_types::Value {
    use serde_json::Value as J;
    let kind = match value {
        J::Null => Kind::NullValue(0),
        J::Bool(b) => Kind::BoolValue(*b),
        J::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        J::String(s) => Kind::StringValue(s.clone()),
        J::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(value_from_json).collect(),
        }),
        J::Object(map) => Kind::StructValue(struct_from_json(map)),
    };
    prost_types::Value { kind: Some(kind) }
}

pub fn json_from_struct(s: &Struct) -> serde_json::Map<String, serde_json::Value> {
    s.fields
        .iter()
        .map(|(k, v)| (k.clone(), json_from_value(v)))
        .collect()
}

fn json_from_value(value: &prost_types::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match &value.kind {
        None | Some(Kind::NullValue(_)) => J::Null,
        Some(Kind::BoolValue(b)) => J::Bool(*b),
        Some(Kind::NumberValue(n)) => {
            // Integral numbers come back as integers, as JSON clients sent them.
            if n.fract() == 0.0 && n.abs() < 9.0e15 {
                J::from(*n as i64)
            } else {
                serde_json::Number::from_f64(*n)
                    .map(J::Number)
                    .unwrap_or(J::Null)
            }
        }
        Some(Kind::StringValue(s)) => J::String(s.clone()),
        Some(Kind::ListValue(list)) => J::Array(list.values.iter().map(json_from_value).collect()),
        Some(Kind::StructValue(s)) => J::Object(json_from_struct(s)),
    }
}

pub fn timestamp_from_epoch(seconds: f64) -> Timestamp {
    let whole = seconds.floor();
    Timestamp {
        seconds: whole as i64,
        nanos: ((seconds - whole) * 1e9).round().min(999_999_999.0) as i32,
    }
}

pub fn epoch_from_timestamp(ts: Option<&Timestamp>) -> f64 {
    ts.map(|t| t.seconds as f64 + f64::from(t.nanos) / 1e9)
        .unwrap_or(0.0)
}
