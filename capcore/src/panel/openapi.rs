//! The OpenAPI 3.1 document, generated from the route table and the request/response types.

use super::routes::all_routes;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

/// Builds `/api/openapi.json`.
pub fn document() -> Value {
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas/".into();
    let mut generator = settings.into_generator();
    let mut paths: Map<String, Value> = Map::new();
    for def in all_routes() {
        let mut op = Map::new();
        op.insert("summary".into(), json!(def.summary));
        op.insert("description".into(), json!(format!("Access: {}.", def.access)));
        let params: Vec<Value> = def
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let mut parameters = params;
        if let Some(query) = def.query {
            let schema = query(&mut generator).to_value();
            let resolved = resolve(&generator, &schema);
            if let Some(props) = resolved.get("properties").and_then(Value::as_object) {
                for (name, s) in props {
                    parameters.push(json!({"name": name, "in": "query", "required": false, "schema": s}));
                }
            }
        }
        if !parameters.is_empty() {
            op.insert("parameters".into(), Value::Array(parameters));
        }
        if let Some(body) = def.body {
            op.insert(
                "requestBody".into(),
                json!({"required": true, "content": {"application/json": {"schema": body(&mut generator).to_value()}}}),
            );
        }
        let ok = match def.response {
            Some(r) => {
                json!({"description": "success", "content": {"application/json": {"schema": r(&mut generator).to_value()}}})
            }
            None => json!({"description": "success"}),
        };
        op.insert(
            "responses".into(),
            json!({
                "200": ok,
                "4XX": {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            }),
        );
        let entry = paths.entry(def.path.to_string()).or_insert_with(|| Value::Object(Map::new()));
        entry[def.method.as_str().to_ascii_lowercase()] = Value::Object(op);
    }
    let mut schemas: Map<String, Value> = generator.take_definitions(true).into_iter().collect();
    schemas.insert(
        "Error".into(),
        json!({"type": "object", "required": ["error", "message"],
               "properties": {"error": {"type": "string"}, "message": {"type": "string"}}}),
    );
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Ctrl-Alt-Play panel API", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "an access token or an API key"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": super::extract::ACCESS_COOKIE},
            },
        },
        "security": [{"bearer": []}, {"cookie": []}],
    })
}

/// Follows a `$ref` into the generator's definitions.
fn resolve(generator: &schemars::SchemaGenerator, schema: &Value) -> Value {
    if let Some(name) = schema.get("$ref").and_then(Value::as_str).and_then(|r| r.rsplit('/').next())
        && let Some(def) = generator.definitions().get(name)
    {
        return def.clone();
    }
    schema.clone()
}
