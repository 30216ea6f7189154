//! The OpenAPI 3.1 document served at `/openapi.json`.
//!
//! Written out here rather than derived: the response types are the domain's own (which knows
//! nothing of HTTP), and one readable document is easier to keep true than annotations spread
//! over the handlers. A test calls every operation listed here and checks that it exists.

use serde_json::{json, Value};

/// Every operation: (method, path, summary).
pub const OPERATIONS: &[(&str, &str, &str)] = &[
    (
        "get",
        "/v1/followups",
        "List the follow-ups the caller can see",
    ),
    ("post", "/v1/followups", "Create a task or a notification"),
    (
        "get",
        "/v1/followups/{id}",
        "One follow-up; ETag is its version",
    ),
    (
        "patch",
        "/v1/followups/{id}",
        "Edit subject, description, due, priority, status_reason",
    ),
    (
        "post",
        "/v1/followups/{id}/assign",
        "Assign it to a user or team (Tildel)",
    ),
    (
        "post",
        "/v1/followups/{id}/shares",
        "Share it with a user or team (Del)",
    ),
    (
        "delete",
        "/v1/followups/{id}/shares/{principal}",
        "Stop sharing it with user:<id> or team:<id>",
    ),
    ("post", "/v1/followups/{id}/complete", "Markér som fuldført"),
    ("post", "/v1/followups/{id}/close", "Luk opgave"),
    (
        "get",
        "/v1/followups/{id}/history",
        "Its events, oldest first, with actor and time",
    ),
    ("get", "/v1/dashboard", "Counts for the caller"),
    (
        "get",
        "/v1/subscriptions",
        "The caller's and its teams' subscriptions",
    ),
    (
        "post",
        "/v1/subscriptions",
        "Subscribe the caller or one of its teams to a topic",
    ),
    ("delete", "/v1/subscriptions/{id}", "Cancel a subscription"),
    (
        "get",
        "/v1/notifications",
        "The caller's inbox: unread first, then newest",
    ),
    (
        "post",
        "/v1/notifications/{id}/read",
        "Mark a notification read (for the caller only)",
    ),
    (
        "post",
        "/v1/notifications/{id}/dismiss",
        "Dismiss a notification (for the caller only)",
    ),
    (
        "get",
        "/v1/stream",
        "Server-sent events: the caller's follow-up changes and notifications, live",
    ),
    ("get", "/healthz", "Liveness"),
    (
        "get",
        "/readyz",
        "Readiness: database, NATS, projection lag",
    ),
    ("get", "/metrics", "Prometheus metrics"),
    ("get", "/openapi.json", "This document"),
];

fn problem_responses(extra: &[&str]) -> Value {
    let mut responses = serde_json::Map::new();
    for status in ["400", "401", "404", "503"].iter().chain(extra) {
        responses.insert(
            (*status).to_owned(),
            json!({ "$ref": "#/components/responses/Problem" }),
        );
    }
    Value::Object(responses)
}

fn operation(method: &str, path: &str, summary: &str) -> Value {
    let public = !path.starts_with("/v1");
    let mut op = json!({ "summary": summary, "operationId": format!("{method} {path}") });
    if public {
        op["security"] = json!([]);
    }
    let mut parameters = Vec::new();
    if path.contains("{id}") {
        parameters.push(json!({ "name": "id", "in": "path", "required": true, "schema": { "type": "string", "format": "uuid" } }));
    }
    if path.contains("{principal}") {
        parameters.push(json!({ "name": "principal", "in": "path", "required": true, "schema": { "type": "string", "example": "team:admissions" } }));
    }
    let changes = method != "get" && path.starts_with("/v1/followups/");
    if changes {
        parameters.push(json!({ "name": "If-Match", "in": "header", "required": false, "schema": { "type": "string" }, "description": "the ETag (version) the change expects; 412 when it is another" }));
    }
    let mut responses = if public {
        json!({})
    } else {
        problem_responses(if changes {
            &["403", "409", "412", "422"]
        } else {
            &[]
        })
    };
    let one = json!({ "description": "the follow-up", "headers": { "ETag": { "schema": { "type": "string" } } }, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/FollowUp" } } } });
    match (method, path) {
        ("get", "/v1/followups") => {
            for (name, schema, description) in [
                (
                    "kind",
                    json!({ "enum": ["exception", "task", "notification"] }),
                    "only this kind",
                ),
                (
                    "status",
                    json!({ "enum": ["open", "completed", "closed"] }),
                    "only this status",
                ),
                (
                    "owner",
                    json!({ "type": "string" }),
                    "me, user:<id> or team:<id>",
                ),
                ("regarding", json!({ "type": "string" }), "<type>:<id>"),
                (
                    "overdue",
                    json!({ "type": "boolean" }),
                    "open and due before now",
                ),
                (
                    "due_before",
                    json!({ "type": "string", "format": "date-time", "description": "RFC 3339, years 1900 to 9999, no leap second" }),
                    "due before this time",
                ),
                (
                    "q",
                    json!({ "type": "string" }),
                    "text in subject or description",
                ),
                (
                    "cursor",
                    json!({ "type": "string" }),
                    "next_cursor of the previous page",
                ),
                (
                    "limit",
                    json!({ "type": "integer", "minimum": 1, "maximum": 200, "default": 50 }),
                    "page size",
                ),
            ] {
                parameters.push(json!({ "name": name, "in": "query", "required": false, "schema": schema, "description": description }));
            }
            responses["200"] = json!({ "description": "a page, newest first", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Page" } } } });
        }
        ("post", "/v1/followups") => {
            op["requestBody"] = body("Create");
            responses["201"] = one;
            responses["422"] = json!({ "$ref": "#/components/responses/Problem" });
        }
        ("get", "/v1/followups/{id}/history") => {
            responses["200"] = json!({ "description": "its events", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/History" } } } });
        }
        ("get", "/v1/dashboard") => {
            responses["200"] = json!({ "description": "counts", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Dashboard" } } } });
        }
        ("get", "/v1/subscriptions") => {
            responses["200"] = json!({ "description": "active subscriptions", "content": { "application/json": { "schema": { "type": "object", "properties": { "items": { "type": "array", "items": { "$ref": "#/components/schemas/Subscription" } } } } } } });
        }
        ("post", "/v1/subscriptions") => {
            op["requestBody"] = body("Subscribe");
            let made = json!({ "description": "the subscription", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Subscription" } } } });
            responses["201"] = made.clone();
            responses["200"] = json!({ "description": "the same subscription existed already", "content": made["content"] });
            responses["403"] = json!({ "$ref": "#/components/responses/Problem" });
            responses["422"] = json!({ "$ref": "#/components/responses/Problem" });
        }
        ("delete", "/v1/subscriptions/{id}") => {
            responses["204"] = json!({ "description": "cancelled" });
        }
        ("get", "/v1/notifications") => {
            for (name, schema, description) in [
                (
                    "state",
                    json!({ "type": "string", "default": "unread,read" }),
                    "unread, read, dismissed, or a comma-separated list",
                ),
                (
                    "cursor",
                    json!({ "type": "string" }),
                    "next_cursor of the previous page",
                ),
                (
                    "limit",
                    json!({ "type": "integer", "minimum": 1, "maximum": 200, "default": 50 }),
                    "page size",
                ),
            ] {
                parameters.push(json!({ "name": name, "in": "query", "required": false, "schema": schema, "description": description }));
            }
            responses["200"] = json!({ "description": "a page of the inbox", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Inbox" } } } });
        }
        ("post", p) if p.starts_with("/v1/notifications/") => {
            responses["200"] = json!({ "description": "the notification with the caller's `state`", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/InboxItem" } } } });
            responses["422"] = json!({ "$ref": "#/components/responses/Problem" });
        }
        ("get", "/v1/stream") => {
            parameters.push(json!({ "name": "Last-Event-ID", "in": "header", "required": false, "schema": { "type": "string" }, "description": "the id of the last event received: the stream resumes after it" }));
            parameters.push(json!({ "name": "access_token", "in": "query", "required": false, "schema": { "type": "string" }, "description": "the token, for clients that cannot send headers (EventSource)" }));
            responses["200"] = json!({ "description": "text/event-stream: `id` = stream sequence, `event` = follow-up event type, `data` = the outbound CloudEvent; comments as heartbeats", "content": { "text/event-stream": {} } });
        }
        ("get", "/healthz") => responses["200"] = json!({ "description": "the process is alive" }),
        ("get", "/readyz") => {
            responses["200"] = json!({ "description": "ready" });
            responses["503"] =
                json!({ "description": "not ready; the body names the failing checks" });
        }
        ("get", "/metrics") => {
            responses["200"] =
                json!({ "description": "Prometheus text format", "content": { "text/plain": {} } })
        }
        ("get", "/openapi.json") => responses["200"] = json!({ "description": "this document" }),
        (_, p) => {
            let schema = match p.rsplit('/').next() {
                Some("assign") => Some("Assign"),
                Some("shares") => Some("Share"),
                _ if method == "patch" => Some("Edit"),
                _ => None,
            };
            if let Some(schema) = schema {
                op["requestBody"] = body(schema);
            }
            responses["200"] = one;
        }
    }
    op["parameters"] = Value::Array(parameters);
    op["responses"] = responses;
    op
}

fn body(schema: &str) -> Value {
    json!({ "required": true, "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } } })
}

/// The document.
pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for (method, path, summary) in OPERATIONS {
        let entry = paths.entry((*path).to_owned()).or_insert_with(|| json!({}));
        entry[*method] = operation(method, path, summary);
    }
    let principal = json!({ "type": "object", "required": ["type", "id"], "additionalProperties": false,
        "properties": { "type": { "enum": ["user", "team"] }, "id": { "type": "string" } } });
    json!({
        "openapi": "3.1.0",
        "info": { "title": "ESAS follow-ups (opfølgninger)", "version": env!("CARGO_PKG_VERSION"),
                  "description": "Exceptions, tasks and notifications for caseworkers. Errors are RFC 9457 problem documents with a stable `code`." },
        "security": [{ "bearer": [] }],
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT (HS256) with sub, inst, teams, roles, exp" } },
            "responses": { "Problem": { "description": "an error", "content": { "application/problem+json": { "schema": { "$ref": "#/components/schemas/Problem" } } } } },
            "schemas": {
                "Principal": principal,
                "Regarding": { "type": "object", "required": ["type", "id"], "properties": { "type": { "type": "string" }, "id": { "type": "string" } } },
                "FollowUp": { "type": "object", "properties": {
                    "id": { "type": "string", "format": "uuid" }, "institution": { "type": "string" },
                    "kind": { "enum": ["exception", "task", "notification"] },
                    "subject": { "type": "string", "maxLength": 200 }, "description": { "type": "string", "maxLength": 2000 },
                    "regarding": { "oneOf": [{ "$ref": "#/components/schemas/Regarding" }, { "type": "null" }] },
                    "owner": { "$ref": "#/components/schemas/Principal" },
                    "shares": { "type": "array", "items": { "type": "object", "properties": { "principal": { "$ref": "#/components/schemas/Principal" }, "access": { "enum": ["read", "write"] } } } },
                    "due": { "type": ["string", "null"], "format": "date-time" },
                    "priority": { "enum": ["low", "normal", "high"] },
                    "status": { "enum": ["open", "completed", "closed"] },
                    "status_reason": { "enum": ["not_started", "in_progress", "waiting", "deferred", "handled", "resolved_by_job", "not_needed"] },
                    "source": { "type": "object" }, "occurrences": { "type": "integer" },
                    "created_at": { "type": "string", "format": "date-time" }, "updated_at": { "type": "string", "format": "date-time" },
                    "version": { "type": "integer" }, "overdue_since": { "type": ["string", "null"], "format": "date-time" } } },
                "Page": { "type": "object", "properties": { "items": { "type": "array", "items": { "$ref": "#/components/schemas/FollowUp" } }, "next_cursor": { "type": ["string", "null"] } } },
                "Create": { "type": "object", "required": ["kind", "subject"], "additionalProperties": false, "properties": {
                    "kind": { "enum": ["task", "notification"] }, "subject": { "type": "string" }, "description": { "type": "string" },
                    "due": { "type": "string", "format": "date-time", "description": "RFC 3339, years 1900 to 9999, no leap second" }, "priority": { "enum": ["low", "normal", "high"] },
                    "regarding": { "$ref": "#/components/schemas/Regarding" }, "owner": { "$ref": "#/components/schemas/Principal" } } },
                "Edit": { "type": "object", "additionalProperties": false, "properties": {
                    "subject": { "type": "string" }, "description": { "type": "string" }, "due": { "type": ["string", "null"], "format": "date-time", "description": "RFC 3339, years 1900 to 9999, no leap second" },
                    "priority": { "enum": ["low", "normal", "high"] }, "status_reason": { "enum": ["not_started", "in_progress", "waiting", "deferred"] } } },
                "Assign": { "type": "object", "required": ["owner"], "additionalProperties": false, "properties": { "owner": { "$ref": "#/components/schemas/Principal" } } },
                "Share": { "type": "object", "required": ["principal", "access"], "additionalProperties": false, "properties": { "principal": { "$ref": "#/components/schemas/Principal" }, "access": { "enum": ["read", "write"] } } },
                "History": { "type": "object", "properties": { "items": { "type": "array", "items": { "type": "object", "properties": {
                    "type": { "type": "string" }, "version": { "type": "integer" }, "actor": { "type": "object" }, "at": { "type": "string", "format": "date-time" },
                    "correlation_id": { "type": ["string", "null"] }, "data": { "type": "object" } } } } } },
                "Dashboard": { "type": "object", "properties": {
                    "open_by_kind": { "type": "object", "properties": { "exception": { "type": "integer" }, "task": { "type": "integer" }, "notification": { "type": "integer" } } },
                    "overdue": { "type": "integer" }, "due_this_week": { "type": "integer" }, "unread_notifications": { "type": "integer" } } },
                "Subscription": { "type": "object", "properties": {
                    "id": { "type": "string", "format": "uuid" }, "topic": { "enum": ["education_structure.dates_changed", "guest_student.data_share_requested"] },
                    "filter": { "type": "object", "additionalProperties": { "type": "string" } }, "delivery": { "enum": ["immediate", "daily_digest"] },
                    "subscriber": { "$ref": "#/components/schemas/Principal" }, "created_at": { "type": "string", "format": "date-time" } } },
                "Subscribe": { "type": "object", "required": ["topic", "delivery"], "additionalProperties": false, "properties": {
                    "topic": { "type": "string" }, "filter": { "type": "object", "additionalProperties": { "type": "string" } },
                    "delivery": { "enum": ["immediate", "daily_digest"] }, "subscriber": { "$ref": "#/components/schemas/Principal" } } },
                "InboxItem": { "allOf": [{ "$ref": "#/components/schemas/FollowUp" }, { "type": "object", "properties": { "state": { "enum": ["unread", "read", "dismissed"] } } }] },
                "Inbox": { "type": "object", "properties": { "items": { "type": "array", "items": { "$ref": "#/components/schemas/InboxItem" } }, "next_cursor": { "type": ["string", "null"] } } },
                "Problem": { "type": "object", "properties": { "type": { "type": "string" }, "title": { "type": "string" }, "status": { "type": "integer" },
                    "detail": { "type": "string" }, "code": { "type": "string" }, "field": { "type": "string" } } }
            }
        }
    })
}
