//! The JSON body of a control-plane request: read once, strictly, and handed to the
//! handler typed, with the field at fault named when it is not what the operation takes.

use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{
    self, DeserializeOwned, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Unexpected,
    Visitor,
};
use serde_json::{Map, Value};

use super::ApiError;

/// A JSON body that refuses unknown fields (each body type denies them), repeated keys
/// and trailing data, and names the field at fault. An empty body reads as `{}`.
/// A number without a fraction written as a float (`3.0`) is the integer it names, as
/// JSON Schema counts it, so an integer field takes it.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::TooLarge
                } else {
                    ApiError::Invalid {
                        message: format!("cannot read the body: {e}"),
                        field: None,
                    }
                }
            })?;
        Self::from_bytes(&bytes)
    }
}

impl<T: DeserializeOwned> Body<T> {
    /// Reads a body already taken from its request, exactly as the extractor reads it.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ApiError> {
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            bytes
        };
        let json = parse(bytes).map_err(|e| ApiError::Invalid {
            message: format!("invalid body: {e}"),
            field: None,
        })?;
        // Every body is an object (serde would also fill a struct from an array).
        if !json.is_object() {
            return Err(ApiError::Invalid {
                message: "invalid body: expected a JSON object".into(),
                field: None,
            });
        }
        let value = serde_path_to_error::deserialize(Typed(json)).map_err(|e| {
            let path = e.path().to_string();
            ApiError::Invalid {
                message: format!("invalid body: {}", e.inner()),
                field: (path != ".").then_some(path),
            }
        })?;
        Ok(Self(value))
    }
}

/// Parses JSON text into a value, refusing a key repeated in one object (a reader that
/// kept the first and one that kept the last would see two different requests).
fn parse(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = de.deserialize_any(Strict)?;
    de.end()?;
    Ok(value)
}

/// Builds a [`Value`], refusing repeated keys and writing whole floats as integers.
struct Strict;

/// 2^53: up to it, a float without a fraction names exactly one integer.
const EXACT: f64 = 9_007_199_254_740_992.0;

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        // Within ±2^53 and without a fraction, the casts below are exact.
        Ok(if v.fract() == 0.0 && v.abs() <= EXACT {
            if v < 0.0 {
                Value::from(v as i64)
            } else {
                Value::from(v as u64)
            }
        } else {
            Value::from(v)
        })
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(StrictSeed)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "the key {key:?} appears twice"
                )));
            }
            let value = map.next_value_seed(StrictSeed)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

/// [`Strict`] as a seed, for nested values.
struct StrictSeed;

impl<'de> de::DeserializeSeed<'de> for StrictSeed {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(Strict)
    }
}

/// A parsed body handed to a type's `Deserialize`: as serde_json's own [`Value`] would,
/// except that a struct is filled from an object only (serde's derive would also fill one
/// from an array, field by field in order, at any depth).
struct Typed(Value);

impl<'de> IntoDeserializer<'de, serde_json::Error> for Typed {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> Deserializer<'de> for Typed {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(b),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    visitor.visit_u64(u)
                } else if let Some(i) = n.as_i64() {
                    visitor.visit_i64(i)
                } else {
                    match n.as_f64() {
                        Some(f) => visitor.visit_f64(f),
                        None => Err(de::Error::custom("a number out of range")),
                    }
                }
            }
            Value::String(s) => visitor.visit_string(s),
            Value::Array(items) => {
                let mut seq = SeqDeserializer::new(items.into_iter().map(Typed));
                let value = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(value)
            }
            Value::Object(map) => {
                let mut fields = MapDeserializer::new(map.into_iter().map(|(k, v)| (k, Typed(v))));
                let value = visitor.visit_map(&mut fields)?;
                fields.end()?;
                Ok(value)
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Array(_) => Err(de::Error::invalid_type(Unexpected::Seq, &"a JSON object")),
            _ => self.deserialize_any(visitor),
        }
    }

    /// A map is an object: `null` is no empty map (serde_json's own map would take it).
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Null => Err(de::Error::invalid_type(Unexpected::Unit, &"a JSON object")),
            Value::Array(_) => Err(de::Error::invalid_type(Unexpected::Seq, &"a JSON object")),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_enum(name, variants, visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
        byte_buf unit unit_struct seq tuple tuple_struct identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &[u8]) -> Value {
        parse(text).expect("valid JSON")
    }

    #[test]
    fn whole_floats_read_as_integers_and_others_stay() {
        let v = parsed(br#"{"a": 3.0, "b": -2.0, "c": 1.5, "d": [1e3], "e": 1e300}"#);
        assert_eq!(v["a"].as_u64(), Some(3));
        assert_eq!(v["b"].as_i64(), Some(-2));
        assert!(v["c"].is_f64());
        assert_eq!(v["d"][0].as_u64(), Some(1000));
        assert!(v["e"].is_f64(), "beyond 2^53 a float stays a float");
    }

    #[test]
    fn a_repeated_key_and_trailing_data_are_refused() {
        let e = parse(br#"{"role": "read_only", "role": "owner"}"#).expect_err("repeated");
        assert!(e.to_string().contains("appears twice"), "{e}");
        assert!(parse(br#"{"a": {"b": 1, "b": 2}}"#).is_err());
        assert!(parse(br#"{"a": 1} {"a": 2}"#).is_err());
        assert!(parse(br#"{"a": 1}"#).is_ok());
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Limits {
        burst: u32,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Settings {
        #[serde(default)]
        limits: Option<Limits>,
    }

    fn typed<T: DeserializeOwned>(text: &[u8]) -> Result<T, serde_json::Error> {
        T::deserialize(Typed(parsed(text)))
    }

    #[test]
    fn a_struct_is_filled_from_an_object_only_at_any_depth() {
        let ok: Settings = typed(br#"{"limits": {"burst": 3.0}}"#).expect("object");
        assert_eq!(ok.limits.map(|l| l.burst), Some(3));
        assert!(
            typed::<Settings>(br#"{"limits": [3]}"#).is_err(),
            "nested array"
        );
        assert!(typed::<Settings>(br"[null]").is_err(), "array for the body");
        assert!(typed::<Settings>(br#"{"limits": null}"#).is_ok());
        type Values = serde_json::Map<String, Value>;
        assert!(typed::<Values>(b"null").is_err(), "null is no object");
        assert!(typed::<Values>(b"[]").is_err(), "an array is no object");
        assert!(typed::<Values>(br#"{"a": null}"#).is_ok());
        assert!(typed::<Settings>(br#"{"limits": {"burst": 1, "x": 2}}"#).is_err());
    }

    #[test]
    fn an_integer_field_takes_a_whole_float_and_refuses_a_fraction() {
        let ok: Limits = typed(br#"{"burst": 12.0}"#).expect("whole");
        assert_eq!(ok.burst, 12);
        assert!(typed::<Limits>(br#"{"burst": 12.5}"#).is_err());
        assert!(
            typed::<Limits>(br#"{"burst": 4294967296}"#).is_err(),
            "past u32"
        );
    }
}
