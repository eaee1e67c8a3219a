//! Format 3.0's short serializer descriptions: members that hold their implied value are left
//! out of the header, and a reader puts them back.
//!
//! The implied values are part of the format (`docs/format.md`, "Implied serializer members"),
//! frozen with it: they are what ferroflow's built-in serializers had as defaults when format 3.0
//! was defined, and they stay so even if those defaults change later. A reader therefore rebuilds
//! exactly the description the writer gave. A writer uses the short form only when that holds
//! (`shorten` checks it), and otherwise keeps format 2.0, whose description is stored verbatim.
//!
//! A compressed serializer's codec options repeat what the header says about compression, so
//! they are implied by the header's own fields rather than by constants.
use serde_json::{Map, Value};

/// What a header says about compression: the codec applied or skipped (`c`, else `x`) and the
/// level (`l`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct HeaderCodec<'a> {
    pub name: Option<&'a str>,
    pub level: Option<i32>,
}

/// The codec a compressed serializer's description implies when its header names none.
const DEFAULT_CODEC: &str = "lzma";

/// The member naming the serializer's type.
const TYPE: &str = "type";
/// The member of a compressed serializer holding the description of the serializer it wraps.
const INNER: &str = "serializer";
/// The type of the compressed serializers: `"compressed"` itself wraps any serializer (named in
/// its `serializer` member); `"compressed/<type>"` wraps a serializer of `<type>`.
const COMPRESSED: &str = "compressed";

/// An implied value, compared with a description's member without building a JSON value.
#[derive(Debug, Clone, Copy)]
enum Implied<'a> {
    Text(&'a str),
    Null,
    EmptyObject,
    Integer(i32),
}

impl Implied<'_> {
    fn matches(self, value: &Value) -> bool {
        match self {
            Implied::Text(text) => value.as_str() == Some(text),
            Implied::Null => value.is_null(),
            Implied::EmptyObject => value.as_object().is_some_and(Map::is_empty),
            Implied::Integer(number) => value.as_i64() == Some(i64::from(number)),
        }
    }

    fn value(self) -> Value {
        match self {
            Implied::Text(text) => Value::String(text.to_owned()),
            Implied::Null => Value::Null,
            Implied::EmptyObject => Value::Object(Map::new()),
            Implied::Integer(number) => Value::from(number),
        }
    }
}

/// (member, implied value) for descriptions of `type_name`, in a blob whose header says `codec`.
fn implied_members<'a>(
    type_name: &str,
    codec: HeaderCodec<'a>,
) -> Vec<(&'static str, Implied<'a>)> {
    if compressed_inner_type(type_name).is_some() {
        return vec![
            (
                "compressionlib",
                Implied::Text(codec.name.unwrap_or(DEFAULT_CODEC)),
            ),
            ("level", codec.level.map_or(Implied::Null, Implied::Integer)),
        ];
    }
    match type_name {
        "pickle" => vec![
            ("picklelib", Implied::Text("cloudpickle")),
            ("picklelib_version", Implied::Null),
        ],
        "json" => vec![
            ("jsonlib", Implied::Text("json")),
            (
                "object_encoder",
                Implied::Text("ferroflow.serializers.ferroflow_json_object_encoder"),
            ),
            (
                "object_decoder",
                Implied::Text("ferroflow.serializers.ferroflow_json_object_decoder"),
            ),
            ("dumps_kwargs", Implied::EmptyObject),
            ("loads_kwargs", Implied::EmptyObject),
        ],
        _ => Vec::new(),
    }
}

/// For a compressed type, the type of the serializer it wraps when the type names it
/// (`Some(Some("json"))` for `"compressed/json"`), or `Some(None)` for `"compressed"`.
fn compressed_inner_type(type_name: &str) -> Option<Option<&str>> {
    if type_name == COMPRESSED {
        return Some(None);
    }
    type_name
        .strip_prefix(COMPRESSED)
        .and_then(|rest| rest.strip_prefix('/'))
        .map(Some)
}

/// The short form of `description` (JSON text), if format 3.0 can carry it: some member holds its
/// implied value, and restoring the implied members gives `description` back. `None` means the
/// description is stored verbatim (format 2.0): nothing to leave out, a member missing that a
/// reader would add, or a number that JSON text may not carry exactly through a reparse.
pub(crate) fn shorten(description: &str, codec: HeaderCodec<'_>) -> Option<String> {
    let full: Value = serde_json::from_str(description).ok()?;
    if has_float(&full) {
        // serde_json reads integers beyond 64 bits as floats: not compared exactly.
        return None;
    }
    let short = short_form(&full, codec);
    if short == full || restored(&short, codec) != full {
        return None;
    }
    Some(serde_json::to_string(&short).expect("a JSON value always serializes"))
}

/// The full description from a format 3.0 header's short one (JSON text): the implied members
/// put back. `None` if the text is not JSON.
pub(crate) fn restore(short: &str, codec: HeaderCodec<'_>) -> Option<String> {
    let short: Value = serde_json::from_str(short).ok()?;
    Some(serde_json::to_string(&restored(&short, codec)).expect("a JSON value always serializes"))
}

fn has_float(value: &Value) -> bool {
    match value {
        Value::Number(number) => number.is_f64(),
        Value::Array(items) => items.iter().any(has_float),
        Value::Object(members) => members.values().any(has_float),
        _ => false,
    }
}

/// `description` without the members that hold their implied value.
fn short_form(description: &Value, codec: HeaderCodec<'_>) -> Value {
    let Some((type_name, members)) = typed(description) else {
        return description.clone();
    };
    let mut short = members.clone();
    for (name, implied) in implied_members(type_name, codec) {
        if short.get(name).is_some_and(|value| implied.matches(value)) {
            short.remove(name);
        }
    }
    if let Some(named_inner) = compressed_inner_type(type_name) {
        if let Some(inner) = short.get(INNER) {
            let mut inner_short = short_form(inner, codec);
            if let (Some(inner_type), Value::Object(inner_members)) =
                (named_inner, &mut inner_short)
            {
                // "compressed/json" wraps a "json" serializer: its type goes without saying,
                // and so does the whole inner description once nothing else is left of it.
                if inner_members.get(TYPE).and_then(Value::as_str) == Some(inner_type) {
                    inner_members.remove(TYPE);
                }
                if inner_members.is_empty() {
                    short.remove(INNER);
                    return Value::Object(short);
                }
            }
            short.insert(INNER.to_owned(), inner_short);
        }
    }
    Value::Object(short)
}

/// `short` with every implied member that it lacks put back.
fn restored(short: &Value, codec: HeaderCodec<'_>) -> Value {
    let Some((type_name, members)) = typed(short) else {
        return short.clone();
    };
    let mut full = members.clone();
    if let Some(named_inner) = compressed_inner_type(type_name) {
        let inner = match (full.remove(INNER), named_inner) {
            (Some(Value::Object(mut inner)), Some(inner_type)) => {
                inner
                    .entry(TYPE)
                    .or_insert_with(|| Value::String(inner_type.to_owned()));
                Some(Value::Object(inner))
            }
            (None, Some(inner_type)) => Some(Value::Object(Map::from_iter([(
                TYPE.to_owned(),
                Value::String(inner_type.to_owned()),
            )]))),
            (inner, _) => inner,
        };
        if let Some(inner) = inner {
            full.insert(INNER.to_owned(), restored(&inner, codec));
        }
    }
    for (name, implied) in implied_members(type_name, codec) {
        full.entry(name).or_insert_with(|| implied.value());
    }
    Value::Object(full)
}

/// The type name and members of a description that is an object with a string `type`.
fn typed(description: &Value) -> Option<(&str, &Map<String, Value>)> {
    let members = description.as_object()?;
    Some((members.get(TYPE)?.as_str()?, members))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_CODEC: HeaderCodec<'static> = HeaderCodec {
        name: None,
        level: None,
    };

    /// The descriptions ferroflow's built-in serializers give with their default options.
    const BUILT_IN: [&str; 5] = [
        r#"{"picklelib":"cloudpickle","picklelib_version":"3.1.3","type":"pickle"}"#,
        r#"{"dumps_kwargs":{},"jsonlib":"json","loads_kwargs":{},"object_decoder":"ferroflow.serializers.ferroflow_json_object_decoder","object_encoder":"ferroflow.serializers.ferroflow_json_object_encoder","type":"json"}"#,
        r#"{"compressionlib":"lzma","level":null,"serializer":{"picklelib":"cloudpickle","picklelib_version":"3.1.3","type":"pickle"},"type":"compressed/pickle"}"#,
        r#"{"compressionlib":"lzma","level":null,"serializer":{"dumps_kwargs":{},"jsonlib":"json","loads_kwargs":{},"object_decoder":"ferroflow.serializers.ferroflow_json_object_decoder","object_encoder":"ferroflow.serializers.ferroflow_json_object_encoder","type":"json"},"type":"compressed/json"}"#,
        r#"{"compressionlib":"lzma","level":null,"serializer":{"dumps_kwargs":{},"jsonlib":"json","loads_kwargs":{},"object_decoder":"ferroflow.serializers.ferroflow_json_object_decoder","object_encoder":"ferroflow.serializers.ferroflow_json_object_encoder","type":"json"},"type":"compressed"}"#,
    ];

    #[test]
    fn built_in_defaults_shorten_to_what_is_not_implied_and_restore_exactly() {
        let shortened: Vec<String> = BUILT_IN
            .iter()
            .map(|d| shorten(d, NO_CODEC).unwrap())
            .collect();
        assert_eq!(
            shortened,
            [
                r#"{"picklelib_version":"3.1.3","type":"pickle"}"#,
                r#"{"type":"json"}"#,
                r#"{"serializer":{"picklelib_version":"3.1.3"},"type":"compressed/pickle"}"#,
                r#"{"type":"compressed/json"}"#,
                r#"{"serializer":{"type":"json"},"type":"compressed"}"#,
            ]
        );
        for (full, short) in BUILT_IN.iter().zip(&shortened) {
            // Python writes descriptions with sorted keys and no spaces, as serde_json does.
            assert_eq!(restore(short, NO_CODEC).unwrap(), *full);
        }
    }

    #[test]
    fn options_other_than_the_implied_ones_are_kept() {
        let zstd_orjson = r#"{"compressionlib":"zstd","level":3,"serializer":{"dumps_kwargs":{"indent":2},"jsonlib":"orjson","loads_kwargs":{},"object_decoder":null,"object_encoder":"ferroflow.serializers.ferroflow_json_object_encoder","type":"json"},"type":"compressed/json"}"#;
        let short = shorten(zstd_orjson, NO_CODEC).unwrap();
        assert_eq!(
            short,
            r#"{"compressionlib":"zstd","level":3,"serializer":{"dumps_kwargs":{"indent":2},"jsonlib":"orjson","object_decoder":null},"type":"compressed/json"}"#
        );
        assert_eq!(restore(&short, NO_CODEC).unwrap(), zstd_orjson);
    }

    #[test]
    fn a_description_that_would_not_restore_exactly_stays_verbatim() {
        for description in [
            // Nothing implied to leave out: custom types, a type-less or non-object description.
            r#"{"type":"yaml","indent":2}"#,
            r#"{"protocol":5}"#,
            r#""pickle""#,
            // A member a reader would add is missing.
            r#"{"type":"json"}"#,
            r#"{"jsonlib":"json","type":"json"}"#,
            r#"{"type":"compressed/json"}"#,
            // Integers beyond 64 bits are floats to serde_json: not compared exactly.
            r#"{"jsonlib":"json","type":"json","dumps_kwargs":{"x":123456789012345678901234567890}}"#,
        ] {
            assert_eq!(shorten(description, NO_CODEC), None, "{description}");
        }
    }

    #[test]
    fn a_compressed_custom_type_leaves_out_its_inner_type_and_the_codec_defaults() {
        let full = r#"{"compressionlib":"lzma","level":null,"serializer":{"indent":2,"type":"yaml"},"type":"compressed/yaml"}"#;
        let short = shorten(full, NO_CODEC).unwrap();
        assert_eq!(
            short,
            r#"{"serializer":{"indent":2},"type":"compressed/yaml"}"#
        );
        assert_eq!(restore(&short, NO_CODEC).unwrap(), full);
        // Another inner type than the one named is kept (readers refuse such files anyway).
        let mismatched = r#"{"compressionlib":"lzma","level":null,"serializer":{"indent":2,"type":"toml"},"type":"compressed/yaml"}"#;
        assert_eq!(
            restore(&shorten(mismatched, NO_CODEC).unwrap(), NO_CODEC).unwrap(),
            mismatched
        );
    }

    #[test]
    fn restoring_never_fails_on_json_of_any_shape() {
        for text in [
            "null",
            "[1,2]",
            r#"{"type":3}"#,
            r#"{"type":"compressed/json","serializer":"json"}"#,
            r#"{"type":"compressed","serializer":[]}"#,
        ] {
            assert!(restore(text, NO_CODEC).is_some(), "{text}");
        }
        assert_eq!(restore("not json", NO_CODEC), None);
    }

    #[test]
    fn a_compressed_serializer_s_codec_options_are_implied_by_the_header_s() {
        let zlib_9 = r#"{"compressionlib":"zlib","level":9,"serializer":{"picklelib":"cloudpickle","picklelib_version":"3.1.3","type":"pickle"},"type":"compressed/pickle"}"#;
        let applied = HeaderCodec {
            name: Some("zlib"),
            level: Some(9),
        };
        let short = shorten(zlib_9, applied).unwrap();
        assert_eq!(
            short,
            r#"{"serializer":{"picklelib_version":"3.1.3"},"type":"compressed/pickle"}"#
        );
        assert_eq!(restore(&short, applied).unwrap(), zlib_9);
        // Skipped, the header names the codec but records no level: the level stays.
        let skipped = HeaderCodec {
            name: Some("zlib"),
            level: None,
        };
        let short = shorten(zlib_9, skipped).unwrap();
        assert_eq!(
            short,
            r#"{"level":9,"serializer":{"picklelib_version":"3.1.3"},"type":"compressed/pickle"}"#
        );
        assert_eq!(restore(&short, skipped).unwrap(), zlib_9);
        // Compressed by a library the header does not name: "lzma" is not implied then.
        let gzip = r#"{"compressionlib":"gzip","level":null,"serializer":{"picklelib":"cloudpickle","picklelib_version":"3.1.3","type":"pickle"},"type":"compressed/pickle"}"#;
        let short = shorten(gzip, NO_CODEC).unwrap();
        assert!(short.contains(r#""compressionlib":"gzip""#), "{short}");
        assert_eq!(restore(&short, NO_CODEC).unwrap(), gzip);
    }
}
