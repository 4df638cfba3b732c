//! The protobuf form of the OpenAPI v2 document: gnostic's `openapi.v2.Document`
//! (github.com/google/gnostic-models, `openapiv2/OpenAPIv2.proto`). client-go's discovery
//! `OpenAPISchema()` asks for nothing else, and older kubectl reads it for `explain` and for
//! client-side validation. Start at [`encode`]; [`super::openapi::swagger`] serves the result.
//!
//! kube-apiserver makes these bytes by parsing its JSON document with gnostic (`ParseDocument`)
//! and marshalling the result, so we convert our JSON document the way gnostic does. Like the
//! decoder in [`super::protobuf`], the conversion is table-driven: every message is a
//! [`Message`] that maps JSON keys to field numbers and value kinds ([`Ty`]). gnostic's
//! conventions, which the tables follow:
//!
//! - a JSON object whose keys are names (`definitions`, `properties`, `paths`, response codes,
//!   security requirements) becomes a repeated `Named*` message `{name = 1, value = 2}`, in the
//!   order of the JSON keys;
//! - `x-*` keys become `vendor_extension`, a repeated `NamedAny`; an `Any` holds its value as YAML
//!   text (`yaml = 2`), and so do `default`, `example` and each `enum` value. We write that YAML
//!   in flow style, that is as JSON, where every string is quoted: YAML 1.1 parsers (Go's
//!   `yaml.v2`, which kubectl uses to read extensions) would take a plain `yes` or `on` for a
//!   boolean;
//! - where Swagger allows alternatives, gnostic has a oneof: `ParametersItem` (a parameter or a
//!   `$ref`), `Parameter` (body or not, by `in`), `NonBodyParameter` (header, formData, query or
//!   path), `ResponseValue` (a response or a `$ref`), `SchemaItem` (`type: file` or a schema),
//!   `AdditionalPropertiesItem` (a schema or a boolean) and `SecurityDefinitionsItem` (by `type`
//!   and `flow`);
//! - a schema's `type` is a `TypeItem` (repeated string) and its `items` an `ItemsItem` (repeated
//!   schema, of which JSON gives one);
//! - proto3: a zero scalar is not written, except as the chosen member of a oneof (so
//!   `additionalProperties: false` survives), and a present message is written even when empty.
//!   Fields go out in field-number order, as Go's marshaller writes them.
//!
//! gnostic refuses a whole document when one key is not in its schema; we drop that value
//! instead and name it in [`Encoded::dropped`], which the tests keep empty.

use std::fmt;

use prost::encoding::{WireType, encode_key, encode_varint};
use serde_json::Value;

// The tables below name value kinds without the `Ty::` prefix.
use self::Ty::{Any, Anys, Bool, Double, Int, Msg, Msgs, Str, Strings};

/// The result of [`encode`].
pub struct Encoded {
    /// The encoded `openapi.v2.Document`.
    pub bytes: Vec<u8>,
    /// Values the protobuf schema has no place for (`path.in.document: why`); they are left out.
    pub dropped: Vec<String>,
}

/// Encodes a Swagger 2.0 document (JSON) as gnostic's `openapi.v2.Document`.
pub fn encode(doc: &Value) -> Encoded {
    let mut encoder = Encoder { dropped: Vec::new() };
    let mut bytes = Vec::new();
    encoder.message(&DOCUMENT, doc, &At::ROOT, &mut bytes);
    Encoded { bytes, dropped: encoder.dropped }
}

/// How a JSON value becomes a protobuf field.
#[derive(Clone, Copy)]
enum Ty {
    /// `string`.
    Str,
    /// `bool`.
    Bool,
    /// `double`.
    Double,
    /// `int64`.
    Int,
    /// `repeated string`, from an array of strings (or one string, for a `TypeItem`).
    Strings,
    /// A message.
    Msg(&'static Message),
    /// `repeated` message, from an array.
    Msgs(&'static Message),
    /// `Any`: any JSON value, as YAML text.
    Any,
    /// `repeated Any`, from an array.
    Anys,
}

/// A JSON key of an object and the field it fills.
struct Field {
    key: &'static str,
    number: u32,
    ty: Ty,
}

const fn f(key: &'static str, number: u32, ty: Ty) -> Field {
    Field { key, number, ty }
}

/// How gnostic reads one message from JSON.
enum Message {
    /// An object with named properties, in field-number order; `x-*` keys go to `extensions`
    /// (always the message's last field number).
    Object { name: &'static str, fields: &'static [Field], extensions: Option<u32> },
    /// An object whose entries (the keys `keys` admits) become `Named*` messages in field
    /// `entries`, each value of type `value`; `x-*` keys go to `extensions` if it is set.
    Map { name: &'static str, entries: u32, keys: Keys, value: Ty, extensions: Option<u32> },
    /// A oneof: `choose` picks the member (field number and type) the JSON value is.
    OneOf { name: &'static str, choose: fn(&Value) -> Option<(u32, Ty)> },
    /// A message of one field, filled with the JSON value itself (`TypeItem`, `ItemsItem`, `StringArray`).
    Wrap { number: u32, ty: Ty },
}

/// Which keys of a [`Message::Map`] are entries.
#[derive(Clone, Copy)]
enum Keys {
    All,
    /// `^/`.
    Paths,
    /// `^([0-9]{3})$|^(default)$`.
    ResponseCodes,
}

impl Keys {
    fn admits(self, key: &str) -> bool {
        match self {
            Keys::All => true,
            Keys::Paths => key.starts_with('/'),
            Keys::ResponseCodes => key == "default" || (key.len() == 3 && key.bytes().all(|b| b.is_ascii_digit())),
        }
    }
}

/// Where a value sits in the JSON document, to name what was dropped.
struct At<'a> {
    parent: Option<&'a At<'a>>,
    step: Step<'a>,
}

enum Step<'a> {
    Root,
    Key(&'a str),
    Index(usize),
}

impl<'a> At<'a> {
    const ROOT: At<'static> = At { parent: None, step: Step::Root };

    fn key(&'a self, key: &'a str) -> At<'a> {
        At { parent: Some(self), step: Step::Key(key) }
    }

    fn index(&'a self, i: usize) -> At<'a> {
        At { parent: Some(self), step: Step::Index(i) }
    }
}

impl fmt::Display for At<'_> {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(parent) = self.parent {
            parent.fmt(out)?;
        }
        match self.step {
            Step::Root => out.write_str("$"),
            Step::Key(k) => write!(out, ".{k}"),
            Step::Index(i) => write!(out, "[{i}]"),
        }
    }
}

struct Encoder {
    dropped: Vec<String>,
}

impl Encoder {
    fn drop(&mut self, at: &At, why: fmt::Arguments) {
        self.dropped.push(format!("{at}: {why}"));
    }

    /// Writes the fields of message `m`, read from `v`, to `out`.
    fn message(&mut self, m: &Message, v: &Value, at: &At, out: &mut Vec<u8>) {
        match m {
            Message::Object { name, fields, extensions } => {
                let Some(obj) = v.as_object() else {
                    return self.drop(at, format_args!("{name} is an object, not {v}"));
                };
                for field in *fields {
                    if let Some(x) = obj.get(field.key) {
                        self.field(field.number, field.ty, x, false, &at.key(field.key), out);
                    }
                }
                for (k, x) in obj {
                    if let Some(n) = extensions
                        && k.starts_with("x-")
                    {
                        self.named(*n, k, Ty::Any, x, at, out);
                    } else if !fields.iter().any(|field| field.key == k) {
                        self.drop(&at.key(k), format_args!("{name} has no such field"));
                    }
                }
            }
            Message::Map { name, entries, keys, value, extensions } => {
                let Some(obj) = v.as_object() else {
                    return self.drop(at, format_args!("{name} is an object, not {v}"));
                };
                let mut named = Vec::with_capacity(obj.len());
                for (k, x) in obj {
                    match extensions {
                        Some(n) if k.starts_with("x-") => named.push((*n, k, Ty::Any, x)),
                        _ if keys.admits(k) => named.push((*entries, k, *value, x)),
                        _ => self.drop(&at.key(k), format_args!("{name} has no such entry")),
                    }
                }
                // Stable: the entries of one field keep the order of the JSON keys.
                named.sort_by_key(|(number, ..)| *number);
                for (number, k, ty, x) in named {
                    self.named(number, k, ty, x, at, out);
                }
            }
            Message::OneOf { name, choose } => match choose(v) {
                Some((number, ty)) => self.field(number, ty, v, true, at, out),
                None => self.drop(at, format_args!("is none of the kinds of {name}")),
            },
            Message::Wrap { number, ty } => self.field(*number, *ty, v, false, at, out),
        }
    }

    /// Writes field `number` of type `ty` with value `v`; a zero scalar only if `always`.
    fn field(&mut self, number: u32, ty: Ty, v: &Value, always: bool, at: &At, out: &mut Vec<u8>) {
        match (ty, v) {
            (Ty::Str, Value::String(s)) => {
                if always || !s.is_empty() {
                    put_bytes(number, s.as_bytes(), out);
                }
            }
            (Ty::Bool, Value::Bool(b)) => {
                if always || *b {
                    encode_key(number, WireType::Varint, out);
                    encode_varint(u64::from(*b), out);
                }
            }
            (Ty::Double, Value::Number(n)) if n.as_f64().is_some() => {
                let d = n.as_f64().unwrap_or_default();
                // Go's proto3 marshaller leaves out +0.0 only, as bits.
                if always || d.to_bits() != 0 {
                    encode_key(number, WireType::SixtyFourBit, out);
                    out.extend_from_slice(&d.to_le_bytes());
                }
            }
            (Ty::Int, Value::Number(n)) if n.as_i64().is_some() => {
                let i = n.as_i64().unwrap_or_default();
                if always || i != 0 {
                    encode_key(number, WireType::Varint, out);
                    // int64 is written as its two's complement, ten bytes when negative.
                    encode_varint(i as u64, out);
                }
            }
            (Ty::Strings, Value::String(s)) => put_bytes(number, s.as_bytes(), out),
            (Ty::Strings, Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    match item.as_str() {
                        Some(s) => put_bytes(number, s.as_bytes(), out),
                        None => self.drop(&at.index(i), format_args!("is a string, not {item}")),
                    }
                }
            }
            (Ty::Msg(m), _) => {
                let mut body = Vec::new();
                self.message(m, v, at, &mut body);
                put_bytes(number, &body, out);
            }
            (Ty::Any, _) => {
                // message Any { google.protobuf.Any value = 1; string yaml = 2; }
                let mut body = Vec::new();
                put_bytes(2, format!("{v}\n").as_bytes(), &mut body);
                put_bytes(number, &body, out);
            }
            (Ty::Msgs(_) | Ty::Anys, Value::Array(items)) => {
                let one = if let Ty::Msgs(m) = ty { Ty::Msg(m) } else { Ty::Any };
                for (i, item) in items.iter().enumerate() {
                    self.field(number, one, item, true, &at.index(i), out);
                }
            }
            _ => {
                let kind = match ty {
                    Ty::Str => "a string",
                    Ty::Bool => "a boolean",
                    Ty::Double => "a number",
                    Ty::Int => "an integer",
                    Ty::Strings => "an array of strings",
                    Ty::Msg(_) | Ty::Any => "a value",
                    Ty::Msgs(_) | Ty::Anys => "an array",
                };
                self.drop(at, format_args!("is {kind}, not {v}"));
            }
        }
    }

    /// Writes a `Named*` message, `{string name = 1; <ty> value = 2;}`, as field `number`.
    fn named(&mut self, number: u32, name: &str, ty: Ty, v: &Value, at: &At, out: &mut Vec<u8>) {
        let mut body = Vec::new();
        if !name.is_empty() {
            put_bytes(1, name.as_bytes(), &mut body);
        }
        self.field(2, ty, v, false, &at.key(name), &mut body);
        put_bytes(number, &body, out);
    }
}

/// Writes a length-delimited field: a string, bytes or an encoded message.
fn put_bytes(number: u32, bytes: &[u8], out: &mut Vec<u8>) {
    encode_key(number, WireType::LengthDelimited, out);
    encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

// The oneofs: which member a JSON value is. gnostic tries every member and keeps the last that
// parses; the members exclude each other by the keys and values below.

fn parameters_item(v: &Value) -> Option<(u32, Ty)> {
    Some(if v.get("$ref").is_some() { (2, Ty::Msg(&JSON_REFERENCE)) } else { (1, Ty::Msg(&PARAMETER)) })
}

fn parameter(v: &Value) -> Option<(u32, Ty)> {
    Some(if v.get("in")?.as_str()? == "body" { (1, Ty::Msg(&BODY_PARAMETER)) } else { (2, Ty::Msg(&NON_BODY_PARAMETER)) })
}

fn non_body_parameter(v: &Value) -> Option<(u32, Ty)> {
    Some(match v.get("in")?.as_str()? {
        "header" => (1, Ty::Msg(&HEADER_PARAMETER)),
        "formData" => (2, Ty::Msg(&FORM_DATA_PARAMETER)),
        "query" => (3, Ty::Msg(&QUERY_PARAMETER)),
        "path" => (4, Ty::Msg(&PATH_PARAMETER)),
        _ => return None,
    })
}

fn response_value(v: &Value) -> Option<(u32, Ty)> {
    Some(if v.get("$ref").is_some() { (2, Ty::Msg(&JSON_REFERENCE)) } else { (1, Ty::Msg(&RESPONSE)) })
}

fn schema_item(v: &Value) -> Option<(u32, Ty)> {
    Some(if v.get("type").and_then(Value::as_str) == Some("file") { (2, Ty::Msg(&FILE_SCHEMA)) } else { (1, Ty::Msg(&SCHEMA)) })
}

fn additional_properties_item(v: &Value) -> Option<(u32, Ty)> {
    match v {
        Value::Object(_) => Some((1, Ty::Msg(&SCHEMA))),
        Value::Bool(_) => Some((2, Ty::Bool)),
        _ => None,
    }
}

fn security_definitions_item(v: &Value) -> Option<(u32, Ty)> {
    let flow = v.get("flow").and_then(Value::as_str);
    Some(match (v.get("type")?.as_str()?, flow) {
        ("basic", _) => (1, Ty::Msg(&BASIC_AUTHENTICATION_SECURITY)),
        ("apiKey", _) => (2, Ty::Msg(&API_KEY_SECURITY)),
        ("oauth2", Some("implicit")) => (3, Ty::Msg(&OAUTH2_IMPLICIT_SECURITY)),
        ("oauth2", Some("password")) => (4, Ty::Msg(&OAUTH2_PASSWORD_SECURITY)),
        ("oauth2", Some("application")) => (5, Ty::Msg(&OAUTH2_APPLICATION_SECURITY)),
        ("oauth2", Some("accessCode")) => (6, Ty::Msg(&OAUTH2_ACCESS_CODE_SECURITY)),
        _ => return None,
    })
}

// The messages of OpenAPIv2.proto, with their field numbers, reachable from `Document`.

static DOCUMENT: Message = Message::Object {
    name: "Document",
    fields: &[
        f("swagger", 1, Str),
        f("info", 2, Msg(&INFO)),
        f("host", 3, Str),
        f("basePath", 4, Str),
        f("schemes", 5, Strings),
        f("consumes", 6, Strings),
        f("produces", 7, Strings),
        f("paths", 8, Msg(&PATHS)),
        f("definitions", 9, Msg(&DEFINITIONS)),
        f("parameters", 10, Msg(&PARAMETER_DEFINITIONS)),
        f("responses", 11, Msg(&RESPONSE_DEFINITIONS)),
        f("security", 12, Msgs(&SECURITY_REQUIREMENT)),
        f("securityDefinitions", 13, Msg(&SECURITY_DEFINITIONS)),
        f("tags", 14, Msgs(&TAG)),
        f("externalDocs", 15, Msg(&EXTERNAL_DOCS)),
    ],
    extensions: Some(16),
};

static INFO: Message = Message::Object {
    name: "Info",
    fields: &[
        f("title", 1, Str),
        f("version", 2, Str),
        f("description", 3, Str),
        f("termsOfService", 4, Str),
        f("contact", 5, Msg(&CONTACT)),
        f("license", 6, Msg(&LICENSE)),
    ],
    extensions: Some(7),
};

static CONTACT: Message =
    Message::Object { name: "Contact", fields: &[f("name", 1, Str), f("url", 2, Str), f("email", 3, Str)], extensions: Some(4) };

static LICENSE: Message = Message::Object { name: "License", fields: &[f("name", 1, Str), f("url", 2, Str)], extensions: Some(3) };

static EXTERNAL_DOCS: Message =
    Message::Object { name: "ExternalDocs", fields: &[f("description", 1, Str), f("url", 2, Str)], extensions: Some(3) };

static TAG: Message = Message::Object {
    name: "Tag",
    fields: &[f("name", 1, Str), f("description", 2, Str), f("externalDocs", 3, Msg(&EXTERNAL_DOCS))],
    extensions: Some(4),
};

static PATHS: Message = Message::Map { name: "Paths", entries: 2, keys: Keys::Paths, value: Msg(&PATH_ITEM), extensions: Some(1) };

static PATH_ITEM: Message = Message::Object {
    name: "PathItem",
    fields: &[
        f("$ref", 1, Str),
        f("get", 2, Msg(&OPERATION)),
        f("put", 3, Msg(&OPERATION)),
        f("post", 4, Msg(&OPERATION)),
        f("delete", 5, Msg(&OPERATION)),
        f("options", 6, Msg(&OPERATION)),
        f("head", 7, Msg(&OPERATION)),
        f("patch", 8, Msg(&OPERATION)),
        f("parameters", 9, Msgs(&PARAMETERS_ITEM)),
    ],
    extensions: Some(10),
};

static OPERATION: Message = Message::Object {
    name: "Operation",
    fields: &[
        f("tags", 1, Strings),
        f("summary", 2, Str),
        f("description", 3, Str),
        f("externalDocs", 4, Msg(&EXTERNAL_DOCS)),
        f("operationId", 5, Str),
        f("produces", 6, Strings),
        f("consumes", 7, Strings),
        f("parameters", 8, Msgs(&PARAMETERS_ITEM)),
        f("responses", 9, Msg(&RESPONSES)),
        f("schemes", 10, Strings),
        f("deprecated", 11, Bool),
        f("security", 12, Msgs(&SECURITY_REQUIREMENT)),
    ],
    extensions: Some(13),
};

static PARAMETERS_ITEM: Message = Message::OneOf { name: "ParametersItem", choose: parameters_item };

static JSON_REFERENCE: Message =
    Message::Object { name: "JsonReference", fields: &[f("$ref", 1, Str), f("description", 2, Str)], extensions: None };

static PARAMETER: Message = Message::OneOf { name: "Parameter", choose: parameter };

static PARAMETER_DEFINITIONS: Message =
    Message::Map { name: "ParameterDefinitions", entries: 1, keys: Keys::All, value: Msg(&PARAMETER), extensions: None };

static BODY_PARAMETER: Message = Message::Object {
    name: "BodyParameter",
    fields: &[f("description", 1, Str), f("name", 2, Str), f("in", 3, Str), f("required", 4, Bool), f("schema", 5, Msg(&SCHEMA))],
    extensions: Some(6),
};

static NON_BODY_PARAMETER: Message = Message::OneOf { name: "NonBodyParameter", choose: non_body_parameter };

/// `HeaderParameterSubSchema` and `PathParameterSubSchema` number their fields alike.
static HEADER_OR_PATH_PARAMETER_FIELDS: [Field; 21] = [
    f("required", 1, Bool),
    f("in", 2, Str),
    f("description", 3, Str),
    f("name", 4, Str),
    f("type", 5, Str),
    f("format", 6, Str),
    f("items", 7, Msg(&PRIMITIVES_ITEMS)),
    f("collectionFormat", 8, Str),
    f("default", 9, Any),
    f("maximum", 10, Double),
    f("exclusiveMaximum", 11, Bool),
    f("minimum", 12, Double),
    f("exclusiveMinimum", 13, Bool),
    f("maxLength", 14, Int),
    f("minLength", 15, Int),
    f("pattern", 16, Str),
    f("maxItems", 17, Int),
    f("minItems", 18, Int),
    f("uniqueItems", 19, Bool),
    f("enum", 20, Anys),
    f("multipleOf", 21, Double),
];

static HEADER_PARAMETER: Message =
    Message::Object { name: "HeaderParameterSubSchema", fields: &HEADER_OR_PATH_PARAMETER_FIELDS, extensions: Some(22) };

static PATH_PARAMETER: Message =
    Message::Object { name: "PathParameterSubSchema", fields: &HEADER_OR_PATH_PARAMETER_FIELDS, extensions: Some(22) };

/// `QueryParameterSubSchema` and `FormDataParameterSubSchema` number their fields alike.
static QUERY_OR_FORM_DATA_PARAMETER_FIELDS: [Field; 22] = [
    f("required", 1, Bool),
    f("in", 2, Str),
    f("description", 3, Str),
    f("name", 4, Str),
    f("allowEmptyValue", 5, Bool),
    f("type", 6, Str),
    f("format", 7, Str),
    f("items", 8, Msg(&PRIMITIVES_ITEMS)),
    f("collectionFormat", 9, Str),
    f("default", 10, Any),
    f("maximum", 11, Double),
    f("exclusiveMaximum", 12, Bool),
    f("minimum", 13, Double),
    f("exclusiveMinimum", 14, Bool),
    f("maxLength", 15, Int),
    f("minLength", 16, Int),
    f("pattern", 17, Str),
    f("maxItems", 18, Int),
    f("minItems", 19, Int),
    f("uniqueItems", 20, Bool),
    f("enum", 21, Anys),
    f("multipleOf", 22, Double),
];

static QUERY_PARAMETER: Message =
    Message::Object { name: "QueryParameterSubSchema", fields: &QUERY_OR_FORM_DATA_PARAMETER_FIELDS, extensions: Some(23) };

static FORM_DATA_PARAMETER: Message =
    Message::Object { name: "FormDataParameterSubSchema", fields: &QUERY_OR_FORM_DATA_PARAMETER_FIELDS, extensions: Some(23) };

static PRIMITIVES_ITEMS: Message = Message::Object {
    name: "PrimitivesItems",
    fields: &[
        f("type", 1, Str),
        f("format", 2, Str),
        f("items", 3, Msg(&PRIMITIVES_ITEMS)),
        f("collectionFormat", 4, Str),
        f("default", 5, Any),
        f("maximum", 6, Double),
        f("exclusiveMaximum", 7, Bool),
        f("minimum", 8, Double),
        f("exclusiveMinimum", 9, Bool),
        f("maxLength", 10, Int),
        f("minLength", 11, Int),
        f("pattern", 12, Str),
        f("maxItems", 13, Int),
        f("minItems", 14, Int),
        f("uniqueItems", 15, Bool),
        f("enum", 16, Anys),
        f("multipleOf", 17, Double),
    ],
    extensions: Some(18),
};

static RESPONSES: Message =
    Message::Map { name: "Responses", entries: 1, keys: Keys::ResponseCodes, value: Msg(&RESPONSE_VALUE), extensions: Some(2) };

static RESPONSE_VALUE: Message = Message::OneOf { name: "ResponseValue", choose: response_value };

static RESPONSE_DEFINITIONS: Message =
    Message::Map { name: "ResponseDefinitions", entries: 1, keys: Keys::All, value: Msg(&RESPONSE), extensions: None };

static RESPONSE: Message = Message::Object {
    name: "Response",
    fields: &[
        f("description", 1, Str),
        f("schema", 2, Msg(&SCHEMA_ITEM)),
        f("headers", 3, Msg(&HEADERS)),
        f("examples", 4, Msg(&EXAMPLES)),
    ],
    extensions: Some(5),
};

static SCHEMA_ITEM: Message = Message::OneOf { name: "SchemaItem", choose: schema_item };

static FILE_SCHEMA: Message = Message::Object {
    name: "FileSchema",
    fields: &[
        f("format", 1, Str),
        f("title", 2, Str),
        f("description", 3, Str),
        f("default", 4, Any),
        f("required", 5, Strings),
        f("type", 6, Str),
        f("readOnly", 7, Bool),
        f("externalDocs", 8, Msg(&EXTERNAL_DOCS)),
        f("example", 9, Any),
    ],
    extensions: Some(10),
};

static HEADERS: Message = Message::Map { name: "Headers", entries: 1, keys: Keys::All, value: Msg(&HEADER), extensions: None };

static HEADER: Message = Message::Object {
    name: "Header",
    fields: &[
        f("type", 1, Str),
        f("format", 2, Str),
        f("items", 3, Msg(&PRIMITIVES_ITEMS)),
        f("collectionFormat", 4, Str),
        f("default", 5, Any),
        f("maximum", 6, Double),
        f("exclusiveMaximum", 7, Bool),
        f("minimum", 8, Double),
        f("exclusiveMinimum", 9, Bool),
        f("maxLength", 10, Int),
        f("minLength", 11, Int),
        f("pattern", 12, Str),
        f("maxItems", 13, Int),
        f("minItems", 14, Int),
        f("uniqueItems", 15, Bool),
        f("enum", 16, Anys),
        f("multipleOf", 17, Double),
        f("description", 18, Str),
    ],
    extensions: Some(19),
};

static EXAMPLES: Message = Message::Map { name: "Examples", entries: 1, keys: Keys::All, value: Any, extensions: None };

static DEFINITIONS: Message = Message::Map { name: "Definitions", entries: 1, keys: Keys::All, value: Msg(&SCHEMA), extensions: None };

static SCHEMA: Message = Message::Object {
    name: "Schema",
    fields: &[
        f("$ref", 1, Str),
        f("format", 2, Str),
        f("title", 3, Str),
        f("description", 4, Str),
        f("default", 5, Any),
        f("multipleOf", 6, Double),
        f("maximum", 7, Double),
        f("exclusiveMaximum", 8, Bool),
        f("minimum", 9, Double),
        f("exclusiveMinimum", 10, Bool),
        f("maxLength", 11, Int),
        f("minLength", 12, Int),
        f("pattern", 13, Str),
        f("maxItems", 14, Int),
        f("minItems", 15, Int),
        f("uniqueItems", 16, Bool),
        f("maxProperties", 17, Int),
        f("minProperties", 18, Int),
        f("required", 19, Strings),
        f("enum", 20, Anys),
        f("additionalProperties", 21, Msg(&ADDITIONAL_PROPERTIES_ITEM)),
        f("type", 22, Msg(&TYPE_ITEM)),
        f("items", 23, Msg(&ITEMS_ITEM)),
        f("allOf", 24, Msgs(&SCHEMA)),
        f("properties", 25, Msg(&PROPERTIES)),
        f("discriminator", 26, Str),
        f("readOnly", 27, Bool),
        f("xml", 28, Msg(&XML)),
        f("externalDocs", 29, Msg(&EXTERNAL_DOCS)),
        f("example", 30, Any),
    ],
    extensions: Some(31),
};

static ADDITIONAL_PROPERTIES_ITEM: Message = Message::OneOf { name: "AdditionalPropertiesItem", choose: additional_properties_item };

static TYPE_ITEM: Message = Message::Wrap { number: 1, ty: Strings };

static ITEMS_ITEM: Message = Message::Wrap { number: 1, ty: Msg(&SCHEMA) };

static PROPERTIES: Message = Message::Map { name: "Properties", entries: 1, keys: Keys::All, value: Msg(&SCHEMA), extensions: None };

static XML: Message = Message::Object {
    name: "Xml",
    fields: &[f("name", 1, Str), f("namespace", 2, Str), f("prefix", 3, Str), f("attribute", 4, Bool), f("wrapped", 5, Bool)],
    extensions: Some(6),
};

static SECURITY_DEFINITIONS: Message =
    Message::Map { name: "SecurityDefinitions", entries: 1, keys: Keys::All, value: Msg(&SECURITY_DEFINITIONS_ITEM), extensions: None };

static SECURITY_DEFINITIONS_ITEM: Message = Message::OneOf { name: "SecurityDefinitionsItem", choose: security_definitions_item };

static BASIC_AUTHENTICATION_SECURITY: Message =
    Message::Object { name: "BasicAuthenticationSecurity", fields: &[f("type", 1, Str), f("description", 2, Str)], extensions: Some(3) };

static API_KEY_SECURITY: Message = Message::Object {
    name: "ApiKeySecurity",
    fields: &[f("type", 1, Str), f("name", 2, Str), f("in", 3, Str), f("description", 4, Str)],
    extensions: Some(5),
};

static OAUTH2_IMPLICIT_SECURITY: Message = Message::Object {
    name: "Oauth2ImplicitSecurity",
    fields: &[
        f("type", 1, Str),
        f("flow", 2, Str),
        f("scopes", 3, Msg(&OAUTH2_SCOPES)),
        f("authorizationUrl", 4, Str),
        f("description", 5, Str),
    ],
    extensions: Some(6),
};

static OAUTH2_PASSWORD_SECURITY: Message = Message::Object {
    name: "Oauth2PasswordSecurity",
    fields: &[f("type", 1, Str), f("flow", 2, Str), f("scopes", 3, Msg(&OAUTH2_SCOPES)), f("tokenUrl", 4, Str), f("description", 5, Str)],
    extensions: Some(6),
};

static OAUTH2_APPLICATION_SECURITY: Message = Message::Object {
    name: "Oauth2ApplicationSecurity",
    fields: &[f("type", 1, Str), f("flow", 2, Str), f("scopes", 3, Msg(&OAUTH2_SCOPES)), f("tokenUrl", 4, Str), f("description", 5, Str)],
    extensions: Some(6),
};

static OAUTH2_ACCESS_CODE_SECURITY: Message = Message::Object {
    name: "Oauth2AccessCodeSecurity",
    fields: &[
        f("type", 1, Str),
        f("flow", 2, Str),
        f("scopes", 3, Msg(&OAUTH2_SCOPES)),
        f("authorizationUrl", 4, Str),
        f("tokenUrl", 5, Str),
        f("description", 6, Str),
    ],
    extensions: Some(7),
};

static OAUTH2_SCOPES: Message = Message::Map { name: "Oauth2Scopes", entries: 1, keys: Keys::All, value: Str, extensions: None };

static SECURITY_REQUIREMENT: Message =
    Message::Map { name: "SecurityRequirement", entries: 1, keys: Keys::All, value: Msg(&STRING_ARRAY), extensions: None };

static STRING_ARRAY: Message = Message::Wrap { number: 1, ty: Strings };

#[cfg(test)]
mod tests {
    //! The bytes are decoded with prost structs written from OpenAPIv2.proto apart from the
    //! tables above (only the messages and fields our document uses), turned back into JSON and
    //! compared with the document they came from. kubectl reading the result is checked by hand
    //! (`kubectl explain --output=plaintext-openapiv2`).
    #![allow(clippy::large_enum_variant, reason = "decoded once per test, the oneofs mirror the proto as prost would generate them")]

    use prost::Message as _;
    use serde_json::{Map, json};

    use super::*;

    #[derive(Clone, PartialEq, prost::Message)]
    struct Document {
        #[prost(string, tag = "1")]
        swagger: String,
        #[prost(message, optional, tag = "2")]
        info: Option<Info>,
        #[prost(message, optional, tag = "8")]
        paths: Option<Paths>,
        #[prost(message, optional, tag = "9")]
        definitions: Option<Definitions>,
        #[prost(message, repeated, tag = "12")]
        security: Vec<SecurityRequirement>,
        #[prost(message, optional, tag = "13")]
        security_definitions: Option<SecurityDefinitions>,
        #[prost(message, repeated, tag = "16")]
        vendor_extension: Vec<NamedAny>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct Info {
        #[prost(string, tag = "1")]
        title: String,
        #[prost(string, tag = "2")]
        version: String,
        #[prost(string, tag = "3")]
        description: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct Any {
        #[prost(string, tag = "2")]
        yaml: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct NamedAny {
        #[prost(string, tag = "1")]
        name: String,
        #[prost(message, optional, tag = "2")]
        value: Option<Any>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct Paths {
        #[prost(message, repeated, tag = "1")]
        vendor_extension: Vec<NamedAny>,
        #[prost(message, repeated, tag = "2")]
        path: Vec<NamedPathItem>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct NamedPathItem {
        #[prost(string, tag = "1")]
        name: String,
        #[prost(message, optional, tag = "2")]
        value: Option<PathItem>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct PathItem {
        #[prost(string, tag = "1")]
        r#ref: String,
        #[prost(message, optional, tag = "2")]
        get: Option<Operation>,
        #[prost(message, optional, tag = "3")]
        put: Option<Operation>,
        #[prost(message, optional, tag = "4")]
        post: Option<Operation>,
        #[prost(message, optional, tag = "5")]
        delete: Option<Operation>,
        #[prost(message, optional, tag = "6")]
        options: Option<Operation>,
        #[prost(message, optional, tag = "7")]
        head: Option<Operation>,
        #[prost(message, optional, tag = "8")]
        patch: Option<Operation>,
        #[prost(message, repeated, tag = "9")]
        parameters: Vec<ParametersItem>,
        #[prost(message, repeated, tag = "10")]
        vendor_extension: Vec<NamedAny>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct Operation {
        #[prost(string, repeated, tag = "1")]
        tags: Vec<String>,
        #[prost(string, tag = "2")]
        summary: String,
        #[prost(string, tag = "3")]
        description: String,
        #[prost(string, tag = "5")]
        operation_id: String,
        #[prost(string, repeated, tag = "6")]
        produces: Vec<String>,
        #[prost(string, repeated, tag = "7")]
        consumes: Vec<String>,
        #[prost(message, repeated, tag = "8")]
        parameters: Vec<ParametersItem>,
        #[prost(message, optional, tag = "9")]
        responses: Option<Responses>,
        #[prost(string, repeated, tag = "10")]
        schemes: Vec<String>,
        #[prost(bool, tag = "11")]
        deprecated: bool,
        #[prost(message, repeated, tag = "13")]
        vendor_extension: Vec<NamedAny>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct ParametersItem {
        #[prost(oneof = "ParametersItemOneof", tags = "1, 2")]
        oneof: Option<ParametersItemOneof>,
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    enum ParametersItemOneof {
        #[prost(message, tag = "1")]
        Parameter(Parameter),
        #[prost(message, tag = "2")]
        JsonReference(JsonReference),
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct JsonReference {
        #[prost(string, tag = "1")]
        r#ref: String,
        #[prost(string, tag = "2")]
        description: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct Parameter {
        #[prost(oneof = "ParameterOneof", tags = "1, 2")]
        oneof: Option<ParameterOneof>,
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    enum ParameterOneof {
        #[prost(message, tag = "1")]
        BodyParameter(BodyParameter),
        #[prost(message, tag = "2")]
        NonBodyParameter(NonBodyParameter),
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct BodyParameter {
        #[prost(string, tag = "1")]
        description: String,
        #[prost(string, tag = "2")]
        name: String,
        #[prost(string, tag = "3")]
        r#in: String,
        #[prost(bool, tag = "4")]
        required: bool,
        #[prost(message, optional, tag = "5")]
        schema: Option<Schema>,
        #[prost(message, repeated, tag = "6")]
        vendor_extension: Vec<NamedAny>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct NonBodyParameter {
        #[prost(oneof = "NonBodyParameterOneof", tags = "1, 2, 3, 4")]
        oneof: Option<NonBodyParameterOneof>,
    }

    /// Header (1) and form data (2) parameters are in no document of ours.
    #[derive(Clone, PartialEq, prost::Oneof)]
    enum NonBodyParameterOneof {
        #[prost(message, tag = "3")]
        Query(QueryParameterSubSchema),
        #[prost(message, tag = "4")]
        Path(PathParameterSubSchema),
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct QueryParameterSubSchema {
        #[prost(bool, tag = "1")]
        required: bool,
        #[prost(string, tag = "2")]
        r#in: String,
        #[prost(string, tag = "3")]
        description: String,
        #[prost(string, tag = "4")]
        name: String,
        #[prost(string, tag = "6")]
        r#type: String,
        #[prost(string, tag = "7")]
        format: String,
        #[prost(bool, tag = "20")]
        unique_items: bool,
        #[prost(message, repeated, tag = "23")]
        vendor_extension: Vec<NamedAny>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct PathParameterSubSchema {
        #[prost(bool, tag = "1")]
        required: bool,
        #[prost(string, tag = "2")]
        r#in: String,
        #[prost(string, tag = "3")]
        description: String,
        #[prost(string, tag = "4")]
        name: String,
        #[prost(string, tag = "5")]
        r#type: String,
        #[prost(string, tag = "6")]
        format: String,
        #[prost(bool, tag = "19")]
        unique_items: bool,
        #[prost(message, repeated, tag = "22")]
        vendor_extension: Vec<NamedAny>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct Responses {
        #[prost(message, repeated, tag = "1")]
        response_code: Vec<NamedResponseValue>,
        #[prost(message, repeated, tag = "2")]
        vendor_extension: Vec<NamedAny>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct NamedResponseValue {
        #[prost(string, tag = "1")]
        name: String,
        #[prost(message, optional, tag = "2")]
        value: Option<ResponseValue>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct ResponseValue {
        #[prost(oneof = "ResponseValueOneof", tags = "1, 2")]
        oneof: Option<ResponseValueOneof>,
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    enum ResponseValueOneof {
        #[prost(message, tag = "1")]
        Response(Response),
        #[prost(message, tag = "2")]
        JsonReference(JsonReference),
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct Response {
        #[prost(string, tag = "1")]
        description: String,
        #[prost(message, optional, tag = "2")]
        schema: Option<SchemaItem>,
        #[prost(message, repeated, tag = "5")]
        vendor_extension: Vec<NamedAny>,
    }

    /// A file schema (2) is in no document of ours.
    #[derive(Clone, PartialEq, prost::Message)]
    struct SchemaItem {
        #[prost(message, optional, tag = "1")]
        schema: Option<Schema>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct Definitions {
        #[prost(message, repeated, tag = "1")]
        additional_properties: Vec<NamedSchema>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct NamedSchema {
        #[prost(string, tag = "1")]
        name: String,
        #[prost(message, optional, tag = "2")]
        value: Option<Schema>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct Schema {
        #[prost(string, tag = "1")]
        r#ref: String,
        #[prost(string, tag = "2")]
        format: String,
        #[prost(string, tag = "3")]
        title: String,
        #[prost(string, tag = "4")]
        description: String,
        #[prost(message, optional, tag = "5")]
        default: Option<Any>,
        #[prost(double, tag = "6")]
        multiple_of: f64,
        #[prost(double, tag = "7")]
        maximum: f64,
        #[prost(bool, tag = "8")]
        exclusive_maximum: bool,
        #[prost(double, tag = "9")]
        minimum: f64,
        #[prost(bool, tag = "10")]
        exclusive_minimum: bool,
        #[prost(int64, tag = "11")]
        max_length: i64,
        #[prost(int64, tag = "12")]
        min_length: i64,
        #[prost(string, tag = "13")]
        pattern: String,
        #[prost(int64, tag = "14")]
        max_items: i64,
        #[prost(int64, tag = "15")]
        min_items: i64,
        #[prost(bool, tag = "16")]
        unique_items: bool,
        #[prost(int64, tag = "17")]
        max_properties: i64,
        #[prost(int64, tag = "18")]
        min_properties: i64,
        #[prost(string, repeated, tag = "19")]
        required: Vec<String>,
        #[prost(message, repeated, tag = "20")]
        r#enum: Vec<Any>,
        #[prost(message, optional, tag = "21")]
        additional_properties: Option<AdditionalPropertiesItem>,
        #[prost(message, optional, tag = "22")]
        r#type: Option<TypeItem>,
        #[prost(message, optional, tag = "23")]
        items: Option<ItemsItem>,
        #[prost(message, repeated, tag = "24")]
        all_of: Vec<Schema>,
        #[prost(message, optional, tag = "25")]
        properties: Option<Properties>,
        #[prost(bool, tag = "27")]
        read_only: bool,
        #[prost(message, optional, tag = "30")]
        example: Option<Any>,
        #[prost(message, repeated, tag = "31")]
        vendor_extension: Vec<NamedAny>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct AdditionalPropertiesItem {
        #[prost(oneof = "AdditionalPropertiesOneof", tags = "1, 2")]
        oneof: Option<AdditionalPropertiesOneof>,
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    enum AdditionalPropertiesOneof {
        #[prost(message, tag = "1", boxed)]
        Schema(Box<Schema>),
        #[prost(bool, tag = "2")]
        Boolean(bool),
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct TypeItem {
        #[prost(string, repeated, tag = "1")]
        value: Vec<String>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct ItemsItem {
        #[prost(message, repeated, tag = "1")]
        schema: Vec<Schema>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct Properties {
        #[prost(message, repeated, tag = "1")]
        additional_properties: Vec<NamedSchema>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct SecurityDefinitions {
        #[prost(message, repeated, tag = "1")]
        additional_properties: Vec<NamedSecurityDefinitionsItem>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct NamedSecurityDefinitionsItem {
        #[prost(string, tag = "1")]
        name: String,
        #[prost(message, optional, tag = "2")]
        value: Option<SecurityDefinitionsItem>,
    }

    /// Only the API key kind (2) is in our document.
    #[derive(Clone, PartialEq, prost::Message)]
    struct SecurityDefinitionsItem {
        #[prost(message, optional, tag = "2")]
        api_key_security: Option<ApiKeySecurity>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct ApiKeySecurity {
        #[prost(string, tag = "1")]
        r#type: String,
        #[prost(string, tag = "2")]
        name: String,
        #[prost(string, tag = "3")]
        r#in: String,
        #[prost(string, tag = "4")]
        description: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct SecurityRequirement {
        #[prost(message, repeated, tag = "1")]
        additional_properties: Vec<NamedStringArray>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct NamedStringArray {
        #[prost(string, tag = "1")]
        name: String,
        #[prost(message, optional, tag = "2")]
        value: Option<StringArray>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct StringArray {
        #[prost(string, repeated, tag = "1")]
        value: Vec<String>,
    }

    // Back to JSON, writing what proto3 can tell apart from a default.

    /// A JSON object under construction that leaves out proto3's zero values.
    #[derive(Default)]
    struct Obj(Map<String, Value>);

    impl Obj {
        fn str(mut self, k: &str, v: &str) -> Self {
            if !v.is_empty() {
                self.0.insert(k.into(), json!(v));
            }
            self
        }

        fn bool(mut self, k: &str, v: bool) -> Self {
            if v {
                self.0.insert(k.into(), json!(true));
            }
            self
        }

        fn num(mut self, k: &str, v: f64) -> Self {
            if v != 0.0 {
                self.0.insert(k.into(), json!(v));
            }
            self
        }

        fn int(mut self, k: &str, v: i64) -> Self {
            if v != 0 {
                self.0.insert(k.into(), json!(v));
            }
            self
        }

        fn strs(mut self, k: &str, v: &[String]) -> Self {
            if !v.is_empty() {
                self.0.insert(k.into(), json!(v));
            }
            self
        }

        fn any(mut self, k: &str, v: Option<&Any>) -> Self {
            if let Some(a) = v {
                self.0.insert(k.into(), yaml(a));
            }
            self
        }

        fn some(mut self, k: &str, v: Option<Value>) -> Self {
            if let Some(v) = v {
                self.0.insert(k.into(), v);
            }
            self
        }

        fn list(self, k: &str, v: Vec<Value>) -> Self {
            let v = (!v.is_empty()).then_some(Value::Array(v));
            self.some(k, v)
        }

        fn ext(mut self, v: &[NamedAny]) -> Self {
            for e in v {
                self.0.insert(e.name.clone(), e.value.as_ref().map(yaml).unwrap_or_default());
            }
            self
        }

        fn done(self) -> Value {
            Value::Object(self.0)
        }
    }

    /// An `Any`'s value, read as YAML by a YAML parser.
    fn yaml(a: &Any) -> Value {
        serde_saphyr::from_str(&a.yaml).unwrap_or_else(|e| panic!("{:?} is not YAML: {e}", a.yaml))
    }

    fn document(d: &Document) -> Value {
        let info = d.info.as_ref().map(|i| Obj::default().str("title", &i.title).str("version", &i.version).done());
        let paths = d.paths.as_ref().map(|p| {
            let mut o = Obj::default().ext(&p.vendor_extension);
            for entry in &p.path {
                o.0.insert(entry.name.clone(), path_item(entry.value.as_ref().unwrap()));
            }
            o.done()
        });
        let security: Vec<Value> = d
            .security
            .iter()
            .map(|r| {
                let entries = r.additional_properties.iter().map(|e| (e.name.clone(), json!(e.value.as_ref().unwrap().value)));
                Value::Object(entries.collect())
            })
            .collect();
        let security_definitions = d.security_definitions.as_ref().map(|s| {
            let entries = s.additional_properties.iter().map(|e| {
                let k = e.value.as_ref().unwrap().api_key_security.as_ref().unwrap();
                let item = Obj::default().str("type", &k.r#type).str("name", &k.name).str("in", &k.r#in).str("description", &k.description);
                (e.name.clone(), item.done())
            });
            Value::Object(entries.collect())
        });
        Obj::default()
            .str("swagger", &d.swagger)
            .some("info", info)
            .some("paths", paths)
            .some("definitions", d.definitions.as_ref().map(|defs| named_schemas(&defs.additional_properties)))
            .list("security", security)
            .some("securityDefinitions", security_definitions)
            .ext(&d.vendor_extension)
            .done()
    }

    fn path_item(p: &PathItem) -> Value {
        let op = |o: &Option<Operation>| o.as_ref().map(operation);
        Obj::default()
            .str("$ref", &p.r#ref)
            .some("get", op(&p.get))
            .some("put", op(&p.put))
            .some("post", op(&p.post))
            .some("delete", op(&p.delete))
            .some("options", op(&p.options))
            .some("head", op(&p.head))
            .some("patch", op(&p.patch))
            .list("parameters", p.parameters.iter().map(parameters_item).collect())
            .ext(&p.vendor_extension)
            .done()
    }

    fn operation(o: &Operation) -> Value {
        let responses = o.responses.as_ref().map(|r| {
            let mut out = Obj::default().ext(&r.vendor_extension);
            for code in &r.response_code {
                let value = match code.value.as_ref().unwrap().oneof.as_ref().unwrap() {
                    ResponseValueOneof::Response(r) => Obj::default()
                        .str("description", &r.description)
                        .some("schema", r.schema.as_ref().map(|s| schema(s.schema.as_ref().unwrap())))
                        .ext(&r.vendor_extension)
                        .done(),
                    ResponseValueOneof::JsonReference(j) => json_reference(j),
                };
                out.0.insert(code.name.clone(), value);
            }
            out.done()
        });
        Obj::default()
            .strs("tags", &o.tags)
            .str("summary", &o.summary)
            .str("description", &o.description)
            .str("operationId", &o.operation_id)
            .strs("produces", &o.produces)
            .strs("consumes", &o.consumes)
            .list("parameters", o.parameters.iter().map(parameters_item).collect())
            .some("responses", responses)
            .strs("schemes", &o.schemes)
            .bool("deprecated", o.deprecated)
            .ext(&o.vendor_extension)
            .done()
    }

    fn json_reference(j: &JsonReference) -> Value {
        Obj::default().str("$ref", &j.r#ref).str("description", &j.description).done()
    }

    fn parameters_item(p: &ParametersItem) -> Value {
        let parameter = match p.oneof.as_ref().unwrap() {
            ParametersItemOneof::Parameter(p) => p,
            ParametersItemOneof::JsonReference(j) => return json_reference(j),
        };
        match parameter.oneof.as_ref().unwrap() {
            ParameterOneof::BodyParameter(b) => Obj::default()
                .str("description", &b.description)
                .str("name", &b.name)
                .str("in", &b.r#in)
                .bool("required", b.required)
                .some("schema", b.schema.as_ref().map(schema))
                .ext(&b.vendor_extension)
                .done(),
            ParameterOneof::NonBodyParameter(n) => match n.oneof.as_ref().unwrap() {
                NonBodyParameterOneof::Query(q) => Obj::default()
                    .bool("required", q.required)
                    .str("in", &q.r#in)
                    .str("description", &q.description)
                    .str("name", &q.name)
                    .str("type", &q.r#type)
                    .str("format", &q.format)
                    .bool("uniqueItems", q.unique_items)
                    .ext(&q.vendor_extension)
                    .done(),
                NonBodyParameterOneof::Path(q) => Obj::default()
                    .bool("required", q.required)
                    .str("in", &q.r#in)
                    .str("description", &q.description)
                    .str("name", &q.name)
                    .str("type", &q.r#type)
                    .str("format", &q.format)
                    .bool("uniqueItems", q.unique_items)
                    .ext(&q.vendor_extension)
                    .done(),
            },
        }
    }

    fn named_schemas(entries: &[NamedSchema]) -> Value {
        Value::Object(entries.iter().map(|e| (e.name.clone(), schema(e.value.as_ref().unwrap()))).collect())
    }

    fn schema(s: &Schema) -> Value {
        let additional = s.additional_properties.as_ref().map(|a| match a.oneof.as_ref().unwrap() {
            AdditionalPropertiesOneof::Schema(s) => schema(s),
            AdditionalPropertiesOneof::Boolean(b) => json!(b),
        });
        let ty = s.r#type.as_ref().map(|t| match t.value.as_slice() {
            [one] => json!(one),
            many => json!(many),
        });
        let items = s.items.as_ref().map(|i| match i.schema.as_slice() {
            [one] => schema(one),
            many => panic!("an ItemsItem of {} schemas", many.len()),
        });
        Obj::default()
            .str("$ref", &s.r#ref)
            .str("format", &s.format)
            .str("title", &s.title)
            .str("description", &s.description)
            .any("default", s.default.as_ref())
            .num("multipleOf", s.multiple_of)
            .num("maximum", s.maximum)
            .bool("exclusiveMaximum", s.exclusive_maximum)
            .num("minimum", s.minimum)
            .bool("exclusiveMinimum", s.exclusive_minimum)
            .int("maxLength", s.max_length)
            .int("minLength", s.min_length)
            .str("pattern", &s.pattern)
            .int("maxItems", s.max_items)
            .int("minItems", s.min_items)
            .bool("uniqueItems", s.unique_items)
            .int("maxProperties", s.max_properties)
            .int("minProperties", s.min_properties)
            .strs("required", &s.required)
            .list("enum", s.r#enum.iter().map(yaml).collect())
            .some("additionalProperties", additional)
            .some("type", ty)
            .some("items", items)
            .list("allOf", s.all_of.iter().map(schema).collect())
            .some("properties", s.properties.as_ref().map(|p| named_schemas(&p.additional_properties)))
            .bool("readOnly", s.read_only)
            .any("example", s.example.as_ref())
            .ext(&s.vendor_extension)
            .done()
    }

    /// `v` as proto3 keeps it: no `false`, `""` or `0` fields (except inside the values an `Any`
    /// carries verbatim), every number a double.
    fn as_proto3_keeps_it(v: &Value) -> Value {
        match v {
            Value::Object(o) => Value::Object(
                o.iter()
                    .filter(|(_, x)| !matches!(x, Value::Bool(false)) && x.as_str() != Some("") && x.as_f64() != Some(0.0))
                    .map(|(k, x)| (k.clone(), as_proto3_keeps_it(x)))
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(as_proto3_keeps_it).collect()),
            Value::Number(n) => json!(n.as_f64()),
            _ => v.clone(),
        }
    }

    fn swagger_json() -> Value {
        serde_json::from_slice(super::super::openapi::swagger(&axum::http::HeaderMap::new()).unwrap().body).unwrap()
    }

    #[test]
    fn the_served_document_decodes_back_to_itself() {
        let doc = swagger_json();
        let encoded = encode(&doc);
        assert_eq!(encoded.dropped, Vec::<String>::new());
        let decoded = Document::decode(encoded.bytes.as_slice()).unwrap();

        // Every definition and path, in the document's order.
        let names: Vec<&str> = decoded.definitions.as_ref().unwrap().additional_properties.iter().map(|d| d.name.as_str()).collect();
        let expected: Vec<&str> = doc["definitions"].as_object().unwrap().keys().map(String::as_str).collect();
        assert!(names.len() > 200, "{} definitions", names.len());
        assert_eq!(names, expected);
        let paths: Vec<&str> = decoded.paths.as_ref().unwrap().path.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(paths, doc["paths"].as_object().unwrap().keys().map(String::as_str).collect::<Vec<_>>());

        let back = as_proto3_keeps_it(&document(&decoded));
        let original = as_proto3_keeps_it(&doc);
        if back != original {
            // Name the first difference rather than print two large documents.
            for (k, v) in original.as_object().unwrap() {
                if let (Value::Object(a), Some(Value::Object(b))) = (v, back.get(k)) {
                    for (name, x) in a {
                        assert_eq!(b.get(name), Some(x), "{k}.{name}");
                    }
                }
                assert_eq!(back.get(k), Some(v), "{k}");
            }
            assert_eq!(back, original);
        }
    }

    #[test]
    fn extensions_and_oneofs_land_where_kubectl_reads_them() {
        let decoded = Document::decode(encode(&swagger_json()).bytes.as_slice()).unwrap();
        let defs = &decoded.definitions.as_ref().unwrap().additional_properties;
        let def = |name: &str| defs.iter().find(|d| d.name == name).and_then(|d| d.value.as_ref()).unwrap();
        let ext = |s: &Schema, name: &str| yaml(s.vendor_extension.iter().find(|e| e.name == name).unwrap().value.as_ref().unwrap());

        let pod = def("io.k8s.api.core.v1.Pod");
        assert_eq!(ext(pod, "x-kubernetes-group-version-kind"), json!([{"group": "", "version": "v1", "kind": "Pod"}]));
        assert_eq!(pod.r#type.as_ref().unwrap().value, ["object"]);
        let props = &pod.properties.as_ref().unwrap().additional_properties;
        let metadata = props.iter().find(|p| p.name == "metadata").unwrap().value.as_ref().unwrap();
        assert_eq!(metadata.r#ref, "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta");

        let spec = def("io.k8s.api.core.v1.PodSpec");
        let containers = spec.properties.as_ref().unwrap().additional_properties.iter().find(|p| p.name == "containers");
        let containers = containers.unwrap().value.as_ref().unwrap();
        assert_eq!(ext(containers, "x-kubernetes-patch-merge-key"), json!("name"));
        assert_eq!(ext(containers, "x-kubernetes-patch-strategy"), json!("merge"));
        assert_eq!(containers.items.as_ref().unwrap().schema[0].r#ref, "#/definitions/io.k8s.api.core.v1.Container");
        assert!(spec.required.contains(&"containers".to_string()));
        let labels = def("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta").properties.as_ref().unwrap();
        let labels = labels.additional_properties.iter().find(|p| p.name == "labels").unwrap().value.as_ref().unwrap();
        let Some(AdditionalPropertiesOneof::Schema(value)) = &labels.additional_properties.as_ref().unwrap().oneof else {
            panic!("labels map to schemas")
        };
        assert_eq!(value.r#type.as_ref().unwrap().value, ["string"]);

        let paths = &decoded.paths.as_ref().unwrap().path;
        let item = paths.iter().find(|p| p.name == "/api/v1/namespaces/{namespace}/pods/{name}").unwrap().value.as_ref().unwrap();
        let kinds: Vec<&str> = item
            .parameters
            .iter()
            .map(|p| match &p.oneof {
                Some(ParametersItemOneof::Parameter(Parameter { oneof: Some(ParameterOneof::NonBodyParameter(n)) })) => match &n.oneof {
                    Some(NonBodyParameterOneof::Path(p)) => {
                        assert!(p.required, "{}", p.name);
                        "path"
                    }
                    Some(NonBodyParameterOneof::Query(_)) => "query",
                    None => "header or form data",
                },
                _ => "body or reference",
            })
            .collect();
        assert_eq!(kinds, ["path", "path", "query"]);
        let put = item.put.as_ref().unwrap();
        let Some(ParametersItemOneof::Parameter(Parameter { oneof: Some(ParameterOneof::BodyParameter(body)) })) = &put.parameters[0].oneof
        else {
            panic!("the first parameter of a replace is its body")
        };
        assert_eq!((body.name.as_str(), body.required), ("body", true));
        assert_eq!(body.schema.as_ref().unwrap().r#ref, "#/definitions/io.k8s.api.core.v1.Pod");
        let gvk = yaml(put.vendor_extension.iter().find(|e| e.name == "x-kubernetes-group-version-kind").unwrap().value.as_ref().unwrap());
        assert_eq!(gvk, json!({"group": "", "version": "v1", "kind": "Pod"}));
        let codes: Vec<&str> = put.responses.as_ref().unwrap().response_code.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(codes, ["200", "201", "401"]);

        let security = &decoded.security_definitions.as_ref().unwrap().additional_properties[0];
        assert_eq!(security.name, "BearerToken");
        assert_eq!(security.value.as_ref().unwrap().api_key_security.as_ref().unwrap().r#in, "header");
        assert_eq!(decoded.security[0].additional_properties[0].name, "BearerToken");
    }

    /// Bytes worked out by hand from OpenAPIv2.proto: a definition with a oneof member that is a
    /// zero value, a type and an extension, fields in number order.
    #[test]
    fn bytes_match_the_proto_by_hand() {
        let doc = json!({"swagger": "2.0", "definitions": {"A": {"x-k": "v", "type": "object", "additionalProperties": false}}});
        let any = [&[0x12, 4][..], b"\"v\"\n"].concat(); // Any { yaml = 2 }
        let named_any = [&[0x0a, 3][..], b"x-k", &[0x12, any.len() as u8], &any].concat();
        let schema = [
            &[0xaa, 0x01, 2, 0x10, 0][..], // additional_properties = 21 { boolean = 2: false }
            &[0xb2, 0x01, 8, 0x0a, 6],     // type = 22 { value = 1: "object" }
            b"object",
            &[0xfa, 0x01, named_any.len() as u8], // vendor_extension = 31
            &named_any,
        ]
        .concat();
        let named_schema = [&[0x0a, 1][..], b"A", &[0x12, schema.len() as u8], &schema].concat();
        let definitions = [&[0x0a, named_schema.len() as u8][..], &named_schema].concat();
        let expected = [&[0x0a, 3][..], b"2.0", &[0x4a, definitions.len() as u8], &definitions].concat();
        let encoded = encode(&doc);
        assert_eq!(encoded.dropped, Vec::<String>::new());
        assert_eq!(encoded.bytes, expected);
    }

    #[test]
    fn values_without_a_field_are_named_and_left_out() {
        let doc = json!({
            "swagger": "2.0",
            "openapi": "3.0.0",
            "paths": {"/x": {"get": {"parameters": [{"name": "q", "in": "cookie", "type": "string"}], "responses": {"2xx": {}}}}},
            "definitions": {"A": {"type": "object", "nullable": true, "maxLength": 1.5}},
        });
        let encoded = encode(&doc);
        assert_eq!(
            encoded.dropped,
            [
                "$.paths./x.get.parameters[0]: is none of the kinds of NonBodyParameter",
                "$.paths./x.get.responses.2xx: Responses has no such entry",
                "$.definitions.A.maxLength: is an integer, not 1.5",
                "$.definitions.A.nullable: Schema has no such field",
                "$.openapi: Document has no such field",
            ]
        );
        let decoded = Document::decode(encoded.bytes.as_slice()).unwrap();
        assert_eq!(decoded.swagger, "2.0");
        assert_eq!(
            decoded.definitions.unwrap().additional_properties[0].value.as_ref().unwrap().r#type.as_ref().unwrap().value,
            ["object"]
        );
    }
}
