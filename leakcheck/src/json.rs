//! The JSON writer behind the report files (`LEAKCHECK_OUT`, `LEAKCHECK_FORMAT=json`).
//!
//! Written here rather than taken from serde_json: a dependency's trait impls reach every crate
//! that links it, and serde_json's `impl PartialEq<Value> for u8` (and its siblings) made a
//! user's own `assert_eq!(&*bytes, &[])` ambiguous (E0283) the moment leakcheck became a
//! dev-dependency. Reports need objects, arrays, strings, integers, booleans and `null`, all
//! written compactly as serde_json writes them.
#![forbid(unsafe_code)]

use std::fmt::Write as _;

/// A value that writes itself as JSON.
pub(crate) trait Json {
    fn write_json(&self, out: &mut String);
}

/// `value` as compact JSON text.
pub(crate) fn to_string<T: Json + ?Sized>(value: &T) -> String {
    let mut out = String::new();
    value.write_json(&mut out);
    out
}

/// Implements [`Json`] for a struct as an object of the listed fields, in order.
macro_rules! json_object {
    ($name:ident $(<$lifetime:lifetime>)? { $($field:ident),* $(,)? }) => {
        impl$(<$lifetime>)? $crate::json::Json for $name$(<$lifetime>)? {
            fn write_json(&self, out: &mut String) {
                out.push('{');
                let mut _first = true;
                $(
                    if !_first {
                        out.push(',');
                    }
                    _first = false;
                    $crate::json::Json::write_json(stringify!($field), out);
                    out.push(':');
                    $crate::json::Json::write_json(&self.$field, out);
                )*
                out.push('}');
            }
        }
    };
}
pub(crate) use json_object;

impl Json for str {
    fn write_json(&self, out: &mut String) {
        out.push('"');
        for c in self.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if c < ' ' => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

impl Json for String {
    fn write_json(&self, out: &mut String) {
        self.as_str().write_json(out);
    }
}

impl Json for bool {
    fn write_json(&self, out: &mut String) {
        out.push_str(if *self { "true" } else { "false" });
    }
}

macro_rules! json_integer {
    ($($ty:ty),*) => {
        $(impl Json for $ty {
            fn write_json(&self, out: &mut String) {
                let _ = write!(out, "{self}");
            }
        })*
    };
}
json_integer!(u32, u64, usize, i64);

impl<T: Json + ?Sized> Json for &T {
    fn write_json(&self, out: &mut String) {
        (**self).write_json(out);
    }
}

impl<T: Json> Json for Option<T> {
    fn write_json(&self, out: &mut String) {
        match self {
            Some(value) => value.write_json(out),
            None => out.push_str("null"),
        }
    }
}

impl<T: Json> Json for [T] {
    fn write_json(&self, out: &mut String) {
        out.push('[');
        for (i, value) in self.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            value.write_json(out);
        }
        out.push(']');
    }
}

impl<T: Json> Json for Vec<T> {
    fn write_json(&self, out: &mut String) {
        self.as_slice().write_json(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Point<'a> {
        name: &'a str,
        at: Vec<i64>,
        seen: Option<bool>,
        note: Option<String>,
    }
    json_object!(Point<'a> { name, at, seen, note });

    #[test]
    fn objects_arrays_and_null_read_back_as_written() {
        let point = Point {
            name: "p",
            at: vec![-1, 0, 18_446_744_073],
            seen: Some(true),
            note: None,
        };
        let text = to_string(&point);
        assert_eq!(
            text,
            r#"{"name":"p","at":[-1,0,18446744073],"seen":true,"note":null}"#
        );
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["at"][2], 18_446_744_073u64);
    }

    #[test]
    fn every_character_survives_a_round_trip() {
        let all: String = (0u32..0x300)
            .chain([0x2028, 0x2029, 0xfeff, 0x1f600])
            .filter_map(char::from_u32)
            .collect();
        let text = to_string(all.as_str());
        let back: String = serde_json::from_str(&text).unwrap();
        assert_eq!(back, all);
        assert_eq!(to_string("a\"b\\c\n\u{1}"), r#""a\"b\\c\n\u0001""#);
    }
}
