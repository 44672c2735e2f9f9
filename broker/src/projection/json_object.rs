//! Editing a tool's JSON document in place: formats that replace one login
//! inside a larger document (Hermes's `providers`, OpenClaw's `profiles`)
//! walk down to it, creating what is missing, and keep everything else.

use serde_json::{Map, Value};

/// The object under `key`, made one if it is missing or not an object.
pub fn object_at<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = map.entry(key).or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    match slot {
        Value::Object(object) => object,
        _ => unreachable!("just made an object"),
    }
}
