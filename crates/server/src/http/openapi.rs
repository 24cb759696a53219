//! The OpenAPI documents of the API, generated from the Rust types (their `JsonSchema`,
//! which reads the same serde attributes the API decodes with) and the resource table of
//! [`discovery`](super::discovery): OpenAPI 3.0 per group-version (`/openapi/v3`, as
//! kubectl 1.27+ reads it) and Swagger 2.0 (`/openapi/v2`), as JSON or in the protobuf
//! form (gnostic's `openapi.v2.Document`) that kubectl 1.20 and client-go ask for. Each
//! kind's definition carries `x-kubernetes-group-version-kind`, which is how `kubectl
//! explain` and kubectl's validation find it.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use super::discovery::{ApiResource, RESOURCES, group_versions};

/// The media type of the protobuf form of the Swagger 2.0 document: the dotted form, as
/// the Kubernetes API server answers (clients ask with `@v1.0`, which is not a valid media
/// type token and which Go's media-type parser refuses in a reply).
pub const V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// The definitions of every kind (OpenAPI 3 schemas, `#/components/schemas/` refs), and
/// the definition name of each kind.
struct Generated {
    schemas: Map<String, Value>,
    kinds: BTreeMap<&'static str, String>,
}

fn generated() -> &'static Generated {
    static GENERATED: OnceLock<Generated> = OnceLock::new();
    GENERATED.get_or_init(|| {
        let mut generator = SchemaSettings::openapi3().with(|s| s.meta_schema = None).into_generator();
        let mut kinds = BTreeMap::new();
        for resource in RESOURCES {
            let Some(schema_fn) = resource.schema else {
                continue;
            };
            let reference = schema_fn(&mut generator);
            let name = reference
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.rsplit('/').next())
                .expect("every kind is a named definition")
                .to_string();
            kinds.insert(resource.kind, name);
        }
        let mut schemas = generator.take_definitions(true);
        schemas.values_mut().for_each(plain_optionals);
        for resource in RESOURCES.iter().filter(|r| r.schema.is_some()) {
            let name = &kinds[resource.kind];
            if let Some(Value::Object(definition)) = schemas.get_mut(name) {
                definition.insert(
                    "x-kubernetes-group-version-kind".to_string(),
                    json!([{"group": resource.group, "version": resource.version, "kind": resource.kind}]),
                );
            }
        }
        Generated { schemas, kinds }
    })
}

fn reference(prefix: &str, resource: &ApiResource) -> Value {
    match generated().kinds.get(resource.kind) {
        Some(name) => json!({"$ref": format!("{prefix}{name}")}),
        None => json!({"type": "object"}),
    }
}

/// The paths of `resources`, with an operation per verb, in OpenAPI 3 (`v3`) or 2 form.
fn paths<'a>(resources: impl Iterator<Item = &'a ApiResource>, v3: bool) -> Map<String, Value> {
    let prefix = if v3 { "#/components/schemas/" } else { "#/definitions/" };
    let mut paths = Map::new();
    for resource in resources {
        let schema = reference(prefix, resource);
        let answer = |code: &str, schema: &Value| {
            let response = if v3 {
                json!({"description": "OK", "content": {"application/json": {"schema": schema}}})
            } else {
                json!({"description": "OK", "schema": schema})
            };
            json!({ code: response })
        };
        let operation = |verb: &str, code: &str| json!({"operationId": format!("{verb}{}", resource.kind), "tags": [resource.group_version()], "responses": answer(code, &schema)});
        let list = json!({"type": "object", "properties": {"items": {"type": "array", "items": schema.clone()}}});
        let mut collection = Map::new();
        let mut item = Map::new();
        for verb in resource.verbs {
            match *verb {
                "list" => {
                    let mut listing = operation("list", "200");
                    listing["responses"] = answer("200", &list);
                    collection.insert("get".into(), listing);
                }
                "create" => {
                    collection.insert("post".into(), operation("create", "201"));
                }
                "get" => {
                    item.insert("get".into(), operation("read", "200"));
                }
                "update" => {
                    item.insert("put".into(), operation("replace", "200"));
                }
                "patch" => {
                    item.insert("patch".into(), operation("patch", "200"));
                }
                "delete" => {
                    item.insert("delete".into(), operation("delete", "200"));
                }
                _ => {}
            }
        }
        if !collection.is_empty() {
            paths.insert(resource.collection(), Value::Object(collection));
        }
        if !item.is_empty() {
            paths.insert(format!("{}/{{name}}", resource.collection()), Value::Object(item));
        }
    }
    paths
}

/// `/openapi/v3`: where each group-version's document is.
pub fn v3_index() -> Value {
    let mut paths = Map::new();
    for (group, version) in group_versions() {
        let path = if group.is_empty() { format!("api/{version}") } else { format!("apis/{group}/{version}") };
        paths.insert(path.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{path}")}));
    }
    json!({"paths": paths})
}

/// `/openapi/v3/<api/v1 | apis/group/version>`: one group-version's OpenAPI 3.0 document.
pub fn v3(path: &str) -> Option<Value> {
    let (group, version) = match path.trim_matches('/').split('/').collect::<Vec<_>>().as_slice() {
        ["api", version] => ("", *version),
        ["apis", group, version] => (*group, *version),
        _ => return None,
    };
    let resources: Vec<&ApiResource> = RESOURCES.iter().filter(|r| r.group == group && r.version == version).collect();
    if resources.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "berth", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths(resources.into_iter(), true),
        "components": {"schemas": generated().schemas},
    }))
}

/// `/openapi/v2`: the Swagger 2.0 document of the whole API.
pub fn v2() -> &'static Value {
    static V2: OnceLock<Value> = OnceLock::new();
    V2.get_or_init(|| {
        let mut definitions = Value::Object(generated().schemas.clone());
        to_swagger(&mut definitions);
        json!({
            "swagger": "2.0",
            "info": {"title": "berth", "version": env!("CARGO_PKG_VERSION")},
            "paths": paths(RESOURCES.iter(), false),
            "definitions": definitions,
        })
    })
}

/// Writes an optional field (`anyOf` its type and `null`) as its type, `nullable`, as the
/// Kubernetes API server does: clients that read schemas (kubectl explain) know that shape.
fn plain_optionals(value: &mut Value) {
    match value {
        Value::Object(fields) => {
            let optional = match fields.get("anyOf") {
                Some(Value::Array(any)) if any.len() == 2 && any[1].get("enum") == Some(&json!([null])) => Some(any[0].clone()),
                _ => None,
            };
            if let Some(inner) = optional {
                fields.remove("anyOf");
                match inner {
                    Value::Object(inner) if inner.contains_key("$ref") => {
                        fields.insert("allOf".to_string(), json!([inner]));
                    }
                    Value::Object(inner) => fields.extend(inner),
                    _ => {}
                }
                fields.insert("nullable".to_string(), Value::Bool(true));
            }
            fields.values_mut().for_each(plain_optionals);
        }
        Value::Array(items) => items.iter_mut().for_each(plain_optionals),
        _ => {}
    }
}

/// Rewrites OpenAPI 3 schemas as Swagger 2.0 ones, as the Kubernetes API server writes
/// them: references to `#/definitions/`, a reference wrapped in `allOf` (to carry a
/// default or a description beside it) unwrapped, and no `nullable` or `default`.
fn to_swagger(value: &mut Value) {
    match value {
        Value::Object(fields) => {
            fields.remove("nullable");
            fields.remove("default");
            let lone_reference = match fields.get("allOf") {
                Some(Value::Array(all)) if all.len() == 1 && all[0].get("$ref").is_some() => all[0].get("$ref").cloned(),
                _ => None,
            };
            if let Some(reference) = lone_reference {
                fields.remove("allOf");
                fields.insert("$ref".to_string(), reference);
            }
            if let Some(Value::String(target)) = fields.get_mut("$ref") {
                *target = target.replace("#/components/schemas/", "#/definitions/");
            }
            fields.values_mut().for_each(to_swagger);
        }
        Value::Array(items) => items.iter_mut().for_each(to_swagger),
        _ => {}
    }
}

/// `/openapi/v2` in protobuf.
pub fn v2_protobuf() -> &'static [u8] {
    static ENCODED: OnceLock<Vec<u8>> = OnceLock::new();
    ENCODED.get_or_init(|| {
        use prost::Message;
        let document = v2();
        let definitions = document["definitions"]
            .as_object()
            .map(|all| {
                all.iter().map(|(name, schema)| proto::NamedSchema { name: name.clone(), value: Some(proto::schema(schema)) }).collect()
            })
            .unwrap_or_default();
        proto::Document {
            swagger: "2.0".to_string(),
            info: Some(proto::Info { title: "berth".to_string(), version: env!("CARGO_PKG_VERSION").to_string() }),
            definitions: Some(proto::Definitions { additional_properties: definitions }),
        }
        .encode_to_vec()
    })
}

/// The part of gnostic's `openapi.v2` protobuf messages (OpenAPIv2.proto) berth fills:
/// the document's info and definitions. Field numbers are the .proto's.
mod proto {
    use serde_json::Value;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Document {
        #[prost(string, tag = "1")]
        pub swagger: String,
        #[prost(message, optional, tag = "2")]
        pub info: Option<Info>,
        #[prost(message, optional, tag = "9")]
        pub definitions: Option<Definitions>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Info {
        #[prost(string, tag = "1")]
        pub title: String,
        #[prost(string, tag = "2")]
        pub version: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Definitions {
        #[prost(message, repeated, tag = "1")]
        pub additional_properties: Vec<NamedSchema>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NamedSchema {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<Schema>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Schema {
        #[prost(string, tag = "1")]
        pub reference: String,
        #[prost(string, tag = "2")]
        pub format: String,
        #[prost(string, tag = "4")]
        pub description: String,
        #[prost(string, repeated, tag = "19")]
        pub required: Vec<String>,
        #[prost(message, repeated, tag = "20")]
        pub enumeration: Vec<Any>,
        #[prost(message, optional, tag = "21")]
        pub additional_properties: Option<AdditionalPropertiesItem>,
        #[prost(message, optional, tag = "22")]
        pub kind: Option<TypeItem>,
        #[prost(message, optional, tag = "23")]
        pub items: Option<ItemsItem>,
        #[prost(message, optional, tag = "25")]
        pub properties: Option<Properties>,
        #[prost(message, repeated, tag = "31")]
        pub vendor_extension: Vec<NamedAny>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AdditionalPropertiesItem {
        #[prost(oneof = "Additional", tags = "1, 2")]
        pub oneof: Option<Additional>,
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Additional {
        #[prost(message, boxed, tag = "1")]
        Schema(Box<Schema>),
        #[prost(bool, tag = "2")]
        Boolean(bool),
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TypeItem {
        #[prost(string, repeated, tag = "1")]
        pub value: Vec<String>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ItemsItem {
        #[prost(message, repeated, tag = "1")]
        pub schema: Vec<Schema>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Properties {
        #[prost(message, repeated, tag = "1")]
        pub additional_properties: Vec<NamedSchema>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NamedAny {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<Any>,
    }

    /// A value written as YAML, as gnostic carries extensions and enum members.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Any {
        #[prost(string, tag = "2")]
        pub yaml: String,
    }

    fn yaml(value: &Value) -> Any {
        Any { yaml: yaml_serde::to_string(value).unwrap_or_default() }
    }

    /// The protobuf form of one Swagger 2.0 schema.
    pub fn schema(json: &Value) -> Schema {
        let text = |key: &str| json.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
        let mut schema = Schema {
            reference: text("$ref"),
            format: text("format"),
            description: text("description"),
            required: json
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect(),
            enumeration: json.get("enum").and_then(Value::as_array).into_iter().flatten().map(yaml).collect(),
            ..Schema::default()
        };
        if let Some(kind) = json.get("type").and_then(Value::as_str) {
            schema.kind = Some(TypeItem { value: vec![kind.to_string()] });
        }
        if let Some(items) = json.get("items") {
            schema.items = Some(ItemsItem { schema: vec![self::schema(items)] });
        }
        if let Some(properties) = json.get("properties").and_then(Value::as_object) {
            let named =
                properties.iter().map(|(name, value)| NamedSchema { name: name.clone(), value: Some(self::schema(value)) }).collect();
            schema.properties = Some(Properties { additional_properties: named });
        }
        schema.additional_properties = match json.get("additionalProperties") {
            Some(Value::Bool(allowed)) => Some(AdditionalPropertiesItem { oneof: Some(Additional::Boolean(*allowed)) }),
            Some(value @ Value::Object(_)) => {
                Some(AdditionalPropertiesItem { oneof: Some(Additional::Schema(Box::new(self::schema(value)))) })
            }
            _ => None,
        };
        if let Some(fields) = json.as_object() {
            schema.vendor_extension = fields
                .iter()
                .filter(|(name, _)| name.starts_with("x-"))
                .map(|(name, value)| NamedAny { name: name.clone(), value: Some(yaml(value)) })
                .collect();
        }
        schema
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_carry_their_group_version_kind_and_the_documents_refer_only_to_definitions_they_have() {
        let document = v2();
        let definitions = document["definitions"].as_object().unwrap();
        let stream = &definitions["ImageStream"];
        assert_eq!(
            stream["x-kubernetes-group-version-kind"],
            json!([{"group": "image.openshift.io", "version": "v1", "kind": "ImageStream"}])
        );
        let mut refs = Vec::new();
        collect_refs(document, &mut refs);
        assert!(!refs.is_empty());
        for target in refs {
            let name = target.strip_prefix("#/definitions/").unwrap_or_else(|| panic!("{target} is not a definition"));
            assert!(definitions.contains_key(name), "{target} is not defined");
        }
        let image = v3("apis/image.openshift.io/v1").unwrap();
        assert!(image["paths"]["/apis/image.openshift.io/v1/namespaces/{namespace}/imagestreams"]["get"].is_object());
        assert!(v3("apis/image.openshift.io/v9").is_none());
        assert_eq!(v3_index()["paths"]["apis/image.openshift.io/v1"]["serverRelativeURL"], "/openapi/v3/apis/image.openshift.io/v1");
    }

    fn collect_refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(fields) => {
                if let Some(Value::String(target)) = fields.get("$ref") {
                    out.push(target.clone());
                }
                fields.values().for_each(|v| collect_refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn the_protobuf_document_decodes_with_every_definition() {
        use prost::Message;
        let decoded = proto::Document::decode(v2_protobuf()).unwrap();
        let names: Vec<&str> = decoded.definitions.as_ref().unwrap().additional_properties.iter().map(|d| d.name.as_str()).collect();
        assert!(names.contains(&"ImageStream") && names.contains(&"TagReference"), "{names:?}");
        let stream =
            decoded.definitions.unwrap().additional_properties.into_iter().find(|d| d.name == "ImageStream").unwrap().value.unwrap();
        let gvk = stream.vendor_extension.iter().find(|e| e.name == "x-kubernetes-group-version-kind").unwrap();
        assert!(gvk.value.as_ref().unwrap().yaml.contains("kind: ImageStream"));
    }
}
