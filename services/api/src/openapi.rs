//! The OpenAPI 3.1 document served at `/openapi.json`.
//!
//! Written out here rather than derived: the response types are the domain's own (which knows
//! nothing of HTTP), and one readable document is easier to keep true than annotations spread
//! over the handlers. A test calls every operation listed here and checks that it exists.

use serde_json::{json, Value};

// Patterns of what the API's parsers accept, so that the document says exactly what a request
// may hold (a client can check before it sends, and schemathesis in CI holds the API to it).
// Lengths are counted after trimming, so they are inside the patterns, not `maxLength`.

/// White space as `str::trim` removes it (Unicode White_Space).
macro_rules! ws {
    () => {
        r"[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
    };
}
/// Neither white space nor a control character (`char::is_control`).
macro_rules! visible {
    () => {
        r"[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
    };
}
/// A user or team id character (libs/domain/src/values/ids.rs): visible, not ':'.
macro_rules! id_char {
    () => {
        r"[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000:]"
    };
}
/// An id character that is not ',' either (lists of principals are comma-separated).
macro_rules! listed_id_char {
    () => {
        r"[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000:,]"
    };
}
/// Not a control character.
macro_rules! not_control {
    () => {
        r"[^\x00-\x1f\x7f-\x9f]"
    };
}
/// Neither white space nor NUL: the first and last character of a filter value.
macro_rules! filter_end {
    () => {
        r"[^\x00\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
    };
}
macro_rules! day {
    () => {
        "(?:0[1-9]|[12][0-9]|3[01])"
    };
}
macro_rules! month {
    () => {
        "(?:0[1-9]|1[0-2])"
    };
}
macro_rules! clock {
    () => {
        r"[Tt](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]+)?"
    };
}
macro_rules! offset {
    () => {
        "(?:[01][0-9]|2[0-3]):[0-5][0-9]"
    };
}
macro_rules! state_name {
    () => {
        "(?:unread|read|dismissed)"
    };
}

/// `Subject::parse`: 1 to 200 characters once trimmed, no control characters.
const SUBJECT: &str = concat!(
    "^",
    ws!(),
    "*",
    visible!(),
    "(?:",
    not_control!(),
    "{0,198}",
    visible!(),
    ")?",
    ws!(),
    "*$"
);
/// `Reason::parse`: 1 to 300 characters once trimmed, no control characters.
const REASON: &str = concat!(
    "^",
    ws!(),
    "*",
    visible!(),
    "(?:",
    not_control!(),
    "{0,298}",
    visible!(),
    ")?",
    ws!(),
    "*$"
);
/// `DataSubject::from_str`: `<type>:<id>`, the id as a regarding's.
const DATA_SUBJECT: &str = concat!(
    "^(?:student|applicant|guest_student|user):",
    not_control!(),
    "{1,100}$"
);
/// `Description::parse`: at most 2000 characters once trimmed (`\r\n` counts as one); line
/// breaks and tabs are the only control characters.
const DESCRIPTION: &str = concat!(
    "^",
    ws!(),
    r"*(?:\r\n|[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]){0,2000}",
    ws!(),
    "*$"
);
/// `NoteText::parse`: 1 to 2000 characters once trimmed (a line break `\r\n` counts as one),
/// line breaks and tabs allowed, no other control characters.
const NOTE_TEXT: &str = concat!(
    "^",
    ws!(),
    "*",
    visible!(),
    r"(?:(?:\r\n|[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]){0,1998}",
    visible!(),
    ")?",
    ws!(),
    "*$"
);
/// `Filter::parse`: 1 to 200 characters once trimmed, no NUL.
const FILTER_VALUE: &str = concat!(
    "^",
    ws!(),
    "*",
    filter_end!(),
    r"(?:[^\x00]{0,198}",
    filter_end!(),
    ")?",
    ws!(),
    "*$"
);
const PRINCIPAL_ID: &str = concat!("^", id_char!(), "{1,64}$");
const PRINCIPAL_TEXT: &str = concat!("^(?:user|team):", id_char!(), "{1,64}$");
const OWNER_FILTER: &str = concat!("^(?:me|mine|(?:user|team):", id_char!(), "{1,64})$");
const REGARDING_TYPE: &str = "^[a-z_]{1,40}$";
const REGARDING_ID: &str = concat!("^", not_control!(), "{1,100}$");
const REGARDING_TEXT: &str = concat!("^[a-z_]{1,40}:", not_control!(), "{1,100}$");
/// `principals` of `/v1/directory/names`: comma-separated principals, blanks around them and
/// empty items allowed.
const NAMES_QUERY: &str = concat!(
    "^",
    ws!(),
    "*(?:(?:user|team):",
    listed_id_char!(),
    "{1,64}",
    ws!(),
    "*)?",
    "(?:,",
    ws!(),
    "*(?:(?:user|team):",
    listed_id_char!(),
    "{1,64}",
    ws!(),
    "*)?)*$"
);
/// Anything without NUL (refused in every path and query string).
const NO_NUL: &str = r"^[^\x00]*$";
const INBOX_STATE: &str = concat!(
    "^(?:",
    ws!(),
    "*",
    state_name!(),
    ws!(),
    "*(?:,",
    ws!(),
    "*",
    state_name!(),
    ws!(),
    "*)*)?$"
);
const IF_MATCH: &str = r#"^(?:\*|(?:W/)*"*\+?0*[0-9]{1,19}"*)$"#;
const LAST_EVENT_ID: &str = "^0*[0-9]{1,19}$";
/// A page cursor as the API hands it out: opaque, sealed (an HMAC), so only one the API gave
/// out is accepted; anything else is 400 `bad_cursor`.
const CURSOR: &str = "^[ur]?[0-9a-f]{48}-[0-9a-f]{16}$";
/// `ApiTime` (services/api/src/routes.rs), beside `format: date-time`: its UTC instant in
/// the years 1900 to 9999, no leap second.
const DATE_TIME: &str = concat!(
    "^(?:(?:(?:190[1-9]|19[1-9][0-9]|[2-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])-",
    month!(),
    "-",
    day!(),
    "|1900-(?:(?:0[2-9]|1[0-2])-",
    day!(),
    "|01-(?:0[2-9]|[12][0-9]|3[01]))",
    "|9999-(?:(?:0[1-9]|1[01])-",
    day!(),
    "|12-(?:0[1-9]|[12][0-9]|30)))",
    clock!(),
    "(?:[Zz]|[+-]",
    offset!(),
    ")",
    "|1900-01-01",
    clock!(),
    r"(?:[Zz]|\+00:00|-",
    offset!(),
    ")",
    "|9999-12-31",
    clock!(),
    r"(?:[Zz]|-00:00|\+",
    offset!(),
    "))$"
);
const TIME: &str =
    "RFC 3339 whose UTC instant is in the years 1900 to 9999, without a leap second (second 60)";

fn nullable(schema: &Value) -> Value {
    json!({ "anyOf": [schema, { "type": "null" }] })
}

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
    (
        "put",
        "/v1/followups/{id}/legal-hold",
        "Place a legal hold: kept past its retention and from erasure (admins)",
    ),
    (
        "delete",
        "/v1/followups/{id}/legal-hold",
        "Lift the legal hold (admins)",
    ),
    (
        "post",
        "/v1/erasures",
        "Erase a data subject's personal data at the caller's institution (admins; GDPR art. 17)",
    ),
    (
        "get",
        "/v1/followups/{id}/notes",
        "Its notes (noter), oldest first",
    ),
    (
        "post",
        "/v1/followups/{id}/notes",
        "Add a note, written by the caller (GDPR guard)",
    ),
    ("get", "/v1/dashboard", "Counts for the caller"),
    (
        "get",
        "/v1/directory/users",
        "Active users of the caller's institution, by name (for pickers)",
    ),
    (
        "get",
        "/v1/directory/teams",
        "Teams of the caller's institution with their members, by name (for pickers)",
    ),
    (
        "get",
        "/v1/directory/names",
        "Display names of users and teams, for showing them instead of ids",
    ),
    (
        "get",
        "/v1/me",
        "Who the caller is, as its token says: user, institution, teams, admin",
    ),
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
        parameters.push(json!({ "name": "principal", "in": "path", "required": true, "schema": { "type": "string", "pattern": PRINCIPAL_TEXT, "example": "team:admissions" } }));
    }
    let changes = method != "get" && path.starts_with("/v1/followups/");
    if changes {
        parameters.push(json!({ "name": "If-Match", "in": "header", "required": false, "schema": { "type": "string", "pattern": IF_MATCH }, "description": "the ETag (version) the change expects (`\"3\"`, `W/\"3\"`, or `*` for any); 412 when it is another" }));
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
    let limit = json!({ "type": "integer", "minimum": 0, "maximum": u32::MAX, "default": 50,
        "description": "page size, 1 to 200: less counts as 1, more as 200" });
    let cursor = json!({ "type": "string", "pattern": CURSOR,
        "description": "next_cursor of the previous page, unchanged (sealed: an edited cursor is 400 bad_cursor)" });
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
                    json!({ "type": "string", "pattern": OWNER_FILTER }),
                    "me, mine (me or one of my teams: what the dashboard counts), user:<id> or team:<id>",
                ),
                (
                    "regarding",
                    json!({ "type": "string", "pattern": REGARDING_TEXT }),
                    "<type>:<id>",
                ),
                (
                    "overdue",
                    json!({ "type": "boolean" }),
                    "open and due before now",
                ),
                (
                    "due_before",
                    json!({ "type": "string", "format": "date-time", "pattern": DATE_TIME, "description": TIME }),
                    "due before this time",
                ),
                (
                    "q",
                    json!({ "type": "string", "pattern": NO_NUL }),
                    "text in subject or description",
                ),
                ("cursor", cursor, "where the page starts"),
                ("limit", limit, "page size"),
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
        ("post", "/v1/erasures") => {
            op["requestBody"] = body("Erasure");
            responses["200"] = json!({ "description": "what was erased, kept under a legal hold and purged", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ErasureReport" } } } });
            for status in ["403", "422"] {
                responses[status] = json!({ "$ref": "#/components/responses/Problem" });
            }
        }
        ("get", "/v1/directory/names") => {
            parameters.push(json!({ "name": "principals", "in": "query", "required": true, "schema": { "type": "string", "pattern": NAMES_QUERY }, "description": "comma-separated user:<id> and team:<id>, at most 200 (more are ignored)" }));
            responses["200"] = json!({ "description": "the names the directory has", "content": { "application/json": { "schema": { "type": "object", "required": ["names"], "properties": { "names": { "type": "object", "additionalProperties": { "type": "string" } } } } } } });
        }
        ("get", p) if p.starts_with("/v1/directory/") => {
            parameters.push(json!({ "name": "q", "in": "query", "required": false, "schema": { "type": "string", "pattern": NO_NUL }, "description": "text in the name (or e-mail); none: everyone, by name" }));
            parameters.push(json!({ "name": "limit", "in": "query", "required": false, "schema": { "type": "integer", "minimum": 0, "maximum": u32::MAX, "default": 20 }, "description": "at most this many, 1 to 100: less counts as 1, more as 100" }));
            responses["200"] = json!({ "description": "matching entries", "content": { "application/json": { "schema": { "type": "object", "required": ["items"], "properties": { "items": { "type": "array", "items": { "$ref": "#/components/schemas/DirectoryEntry" } } } } } } });
        }
        ("get", "/v1/followups/{id}/notes") => {
            responses["200"] = json!({ "description": "its notes", "content": { "application/json": { "schema": { "type": "object", "required": ["items"], "properties": { "items": { "type": "array", "items": { "$ref": "#/components/schemas/Note" } } } } } } });
        }
        ("post", "/v1/followups/{id}/notes") => {
            op["requestBody"] = body("NoteBody");
            responses["201"] = json!({ "description": "the note", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Note" } } } });
        }
        ("get", "/v1/me") => {
            responses["200"] = json!({ "description": "the caller", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Me" } } } });
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
                    json!({ "type": "string", "pattern": INBOX_STATE, "default": "unread,read" }),
                    "unread, read, dismissed, or a comma-separated list",
                ),
                ("cursor", cursor, "where the page starts"),
                ("limit", limit, "page size"),
            ] {
                parameters.push(json!({ "name": name, "in": "query", "required": false, "schema": schema, "description": description }));
            }
            responses["200"] = json!({ "description": "a page of the inbox", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Inbox" } } } });
        }
        ("post", p) if p.starts_with("/v1/notifications/") => {
            responses["200"] = json!({ "description": "the notification with the caller's `state`", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/InboxItem" } } } });
            responses["409"] = json!({ "$ref": "#/components/responses/Problem" });
            responses["422"] = json!({ "$ref": "#/components/responses/Problem" });
        }
        ("get", "/v1/stream") => {
            parameters.push(json!({ "name": "Last-Event-ID", "in": "header", "required": false, "schema": { "type": "string", "pattern": LAST_EVENT_ID }, "description": "the id of the last event received: the stream resumes after it" }));
            parameters.push(json!({ "name": "access_token", "in": "query", "required": false, "schema": { "type": "string", "pattern": NO_NUL }, "description": "the token, for clients that cannot send headers (EventSource); the Authorization header wins" }));
            responses["200"] = json!({ "description": "text/event-stream: `id` = stream sequence, `event` = follow-up event type, `data` = the outbound CloudEvent; comments as heartbeats", "content": { "text/event-stream": {} } });
        }
        ("get", "/healthz") => {
            responses["200"] = json!({ "description": "the process is alive", "content": { "application/json": { "schema": { "type": "object", "required": ["status"], "properties": { "status": { "const": "ok" } } } } } })
        }
        ("get", "/readyz") => {
            let body = json!({ "application/json": { "schema": { "$ref": "#/components/schemas/Readiness" } } });
            responses["200"] = json!({ "description": "ready", "content": &body });
            responses["503"] = json!({ "description": "not ready; `checks` names the failing ones", "content": &body });
        }
        ("get", "/metrics") => {
            responses["200"] =
                json!({ "description": "Prometheus text format", "content": { "text/plain": {} } })
        }
        ("get", "/openapi.json") => {
            responses["200"] = json!({ "description": "this document", "content": { "application/json": { "schema": { "type": "object" } } } })
        }
        (_, p) => {
            let schema = match p.rsplit('/').next() {
                Some("assign") => Some("Assign"),
                Some("shares") => Some("Share"),
                Some("legal-hold") if method == "put" => Some("LegalHold"),
                _ if method == "patch" => Some("Edit"),
                _ => None,
            };
            if let Some(schema) = schema {
                op["requestBody"] = body(schema);
            }
            responses["200"] = one;
        }
    }
    // Every JSON body: too large, or not JSON.
    if !op["requestBody"].is_null() {
        for status in ["413", "415"] {
            responses[status] = json!({ "$ref": "#/components/responses/Problem" });
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
        "properties": { "type": { "type": "string", "enum": ["user", "team"] },
                        "id": { "type": "string", "pattern": PRINCIPAL_ID, "description": "1 to 64 characters, no white space, control characters or ':'" } } });
    let time = json!({ "type": ["string", "null"], "format": "date-time", "pattern": DATE_TIME, "description": TIME });
    let subject = json!({ "type": "string", "pattern": SUBJECT, "description": "one line, 1 to 200 characters once trimmed; no CPR number or sensitive term (422)" });
    let description = json!({ "type": ["string", "null"], "pattern": DESCRIPTION, "description": "at most 2000 characters once trimmed; no CPR number or sensitive term (422)" });
    let filter_value = json!({ "type": "string", "pattern": FILTER_VALUE, "description": "exact match; 1 to 200 characters once trimmed; no CPR number or sensitive term (422)" });
    // One alternative per topic, from the domain's own list, so the document follows it.
    let subscribe: Vec<Value> = followup_domain::TOPICS
        .iter()
        .map(|topic| {
            let fields: serde_json::Map<String, Value> = topic
                .filters
                .iter()
                .map(|f| ((*f).to_owned(), filter_value.clone()))
                .collect();
            json!({ "type": "object", "required": ["topic", "delivery"], "additionalProperties": false, "properties": {
                "topic": { "const": topic.name },
                "filter": nullable(&json!({ "type": "object", "additionalProperties": false, "properties": fields })),
                "delivery": { "type": "string", "enum": ["immediate", "daily_digest"] },
                "subscriber": nullable(&json!({ "$ref": "#/components/schemas/Principal" })) } })
        })
        .collect();
    let mut document = json!({
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
                "Regarding": { "type": "object", "required": ["type", "id"], "additionalProperties": false, "properties": {
                    "type": { "type": "string", "pattern": REGARDING_TYPE }, "id": { "type": "string", "pattern": REGARDING_ID } } },
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
                    "kind": { "type": "string", "enum": ["task", "notification"] }, "subject": subject, "description": description,
                    "due": time, "priority": { "enum": ["low", "normal", "high", null] },
                    "regarding": nullable(&json!({ "$ref": "#/components/schemas/Regarding" })),
                    "owner": nullable(&json!({ "$ref": "#/components/schemas/Principal" })) } },
                "Edit": { "type": "object", "additionalProperties": false,
                    "description": "absent or null: unchanged, except `due: null`, which removes the due date",
                    "properties": {
                    "subject": nullable(&subject), "description": description, "due": time,
                    "priority": { "enum": ["low", "normal", "high", null] }, "status_reason": { "enum": ["not_started", "in_progress", "waiting", "deferred", null] } } },
                "Assign": { "type": "object", "required": ["owner"], "additionalProperties": false, "properties": { "owner": { "$ref": "#/components/schemas/Principal" } } },
                "Share": { "type": "object", "required": ["principal", "access"], "additionalProperties": false, "properties": { "principal": { "$ref": "#/components/schemas/Principal" }, "access": { "type": "string", "enum": ["read", "write"] } } },
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
                "Subscribe": { "oneOf": subscribe },
                "Readiness": { "type": "object", "required": ["status", "checks"], "properties": {
                    "status": { "enum": ["ready", "not_ready"] }, "checks": { "type": "object" } } },
                "InboxItem": { "allOf": [{ "$ref": "#/components/schemas/FollowUp" }, { "type": "object", "properties": { "state": { "enum": ["unread", "read", "dismissed"] } } }] },
                "Inbox": { "type": "object", "properties": { "items": { "type": "array", "items": { "$ref": "#/components/schemas/InboxItem" } }, "next_cursor": { "type": ["string", "null"] } } },
                "Problem": { "type": "object", "properties": { "type": { "type": "string" }, "title": { "type": "string" }, "status": { "type": "integer" },
                    "detail": { "type": "string" }, "code": { "type": "string" }, "field": { "type": "string" } } }
            }
        }
    });
    add_privacy_schemas(&mut document["components"]["schemas"]);
    document
}

/// The GDPR fields of a follow-up, and the bodies of erasures and legal holds.
fn add_privacy_schemas(schemas: &mut Value) {
    let followup = &mut schemas["FollowUp"]["properties"];
    followup["person"] = json!({ "description": "whose personal data it holds; null when about no one, or erased",
        "oneOf": [{ "type": "object", "required": ["type", "id"], "properties": {
            "type": { "enum": ["student", "applicant", "guest_student", "user"] }, "id": { "type": "string" } } }, { "type": "null" }] });
    followup["finished_at"] = json!({ "type": ["string", "null"], "format": "date-time" });
    followup["legal_hold"] =
        json!({ "type": ["string", "null"], "description": "why it is kept past its retention" });
    followup["erased_at"] = json!({ "type": ["string", "null"], "format": "date-time",
        "description": "when its personal data was erased; its texts read [slettet] since" });
    schemas["Erasure"] = json!({ "type": "object", "required": ["subject", "reason"], "additionalProperties": false, "properties": {
        "subject": { "type": "string", "pattern": DATA_SUBJECT, "example": "student:S-1" },
        "reason": { "type": "string", "pattern": REASON, "description": "why, for the record (a case number); no CPR number (422)" } } });
    schemas["ErasureReport"] = json!({ "type": "object",
        "required": ["id", "erased", "held", "already_erased", "digest_entries", "purged_messages"], "properties": {
        "id": { "type": "string", "format": "uuid" },
        "erased": { "type": "array", "items": { "type": "string", "format": "uuid" } },
        "held": { "type": "array", "items": { "type": "string", "format": "uuid" }, "description": "kept under a legal hold" },
        "already_erased": { "type": "integer" }, "digest_entries": { "type": "integer" },
        "purged_messages": { "type": ["integer", "null"], "description": "deleted from the outbound and dead-letter streams; null without NATS" } } });
    schemas["DirectoryEntry"] = json!({ "type": "object", "required": ["principal", "display_name"], "properties": {
        "principal": { "$ref": "#/components/schemas/Principal" }, "display_name": { "type": "string" },
        "email": { "type": ["string", "null"] },
        "members": { "type": "array", "items": { "type": "object", "properties": {
            "principal": { "$ref": "#/components/schemas/Principal" }, "display_name": { "type": "string" } } } } } });
    schemas["History"]["properties"]["items"]["items"]["properties"]["changes"] = json!({
        "type": "array", "description": "what the event changed: old → new, from → to; for a share, whose and which access (to null: removed)",
        "items": { "type": "object", "required": ["field", "from", "to"], "properties": {
            "field": { "enum": ["subject", "description", "due", "priority", "status", "status_reason", "owner", "share", "legal_hold"] },
            "principal": { "$ref": "#/components/schemas/Principal" }, "from": {}, "to": {} } } });
    schemas["NoteBody"] = json!({ "type": "object", "required": ["text"], "additionalProperties": false,
        "properties": { "text": { "type": "string", "pattern": NOTE_TEXT, "description": "no CPR number or sensitive personal data (422)" } } });
    schemas["Note"] = json!({ "type": "object", "required": ["id", "text", "author", "at"], "properties": {
        "id": { "type": "string", "format": "uuid" }, "text": { "type": "string" },
        "author": { "type": "object" }, "at": { "type": "string", "format": "date-time" } } });
    schemas["FollowUp"]["properties"]["notes"] =
        json!({ "type": "array", "items": { "$ref": "#/components/schemas/Note" } });
    schemas["Me"] = json!({ "type": "object", "required": ["user", "institution", "teams", "admin"], "properties": {
        "user": { "type": "string" }, "institution": { "type": "string" },
        "teams": { "type": "array", "items": { "type": "string" } }, "admin": { "type": "boolean" } } });
    schemas["LegalHold"] = json!({ "type": "object", "required": ["reason"], "additionalProperties": false,
        "properties": { "reason": { "type": "string", "pattern": REASON } } });
}

#[cfg(test)]
mod tests {
    use super::*;
    use followup_domain::{Description, Principal, Regarding, Subject};

    fn matches(pattern: &str, text: &str) -> bool {
        regex::Regex::new(pattern).unwrap().is_match(text)
    }

    /// The document's pattern and the parser agree on each of `samples`.
    fn agree(pattern: &str, parses: impl Fn(&str) -> bool, samples: &[&str]) {
        for sample in samples {
            assert_eq!(
                matches(pattern, sample),
                parses(sample),
                "pattern and parser disagree on {sample:?}"
            );
        }
    }

    #[test]
    fn the_documented_patterns_accept_exactly_what_the_parsers_accept() {
        let long = "a".repeat(200);
        let too_long = "a".repeat(201);
        let padded = format!("  {long}  ");
        agree(
            SUBJECT,
            |s| Subject::parse(s).is_ok(),
            &[
                "Ring", " x ", "", "   ", "x\u{7}y", &long, &too_long, &padded, "a\nb",
            ],
        );
        let long_note = "n".repeat(2000);
        let too_long_note = "n".repeat(2001);
        agree(
            NOTE_TEXT,
            |s| followup_domain::NoteText::parse(s).is_ok(),
            &[
                "Ringet op",
                "",
                "  ",
                "a\r\nb",
                "a\nb\tc",
                "x\u{7}y",
                &long_note,
                &too_long_note,
                &format!(" {long_note}\n"),
                "\u{85}x",
            ],
        );
        let long_description = "b".repeat(2000);
        let long_description_padded = format!("\n{long_description}\n");
        let too_long_description = "b".repeat(2001);
        agree(
            DESCRIPTION,
            |s| Description::parse(s).is_ok(),
            &[
                "",
                "linje 1\r\nlinje 2\tog tab",
                "bell\u{7}",
                &long_description,
                &long_description_padded,
                &too_long_description,
            ],
        );
        agree(
            PRINCIPAL_TEXT,
            |s| s.parse::<Principal>().is_ok(),
            &[
                "user:anna",
                "team:admissions",
                "user:a b",
                "user:",
                "group:x",
                "user:a:b",
                &format!("user:{}", "u".repeat(65)),
            ],
        );
        agree(
            REGARDING_TEXT,
            |s| s.parse::<Regarding>().is_ok(),
            &[
                "application:APP-2026-1",
                "student:S 1",
                "Student:x",
                "student:",
                "student:a\u{1}",
            ],
        );
        let long_reason = "r".repeat(300);
        let too_long_reason = "r".repeat(301);
        agree(
            REASON,
            |s| followup_domain::Reason::parse(s).is_ok(),
            &[
                "Sag 2026-14",
                " x ",
                "",
                "a\tb",
                &long_reason,
                &too_long_reason,
            ],
        );
        agree(
            DATA_SUBJECT,
            |s| s.parse::<followup_domain::DataSubject>().is_ok(),
            &[
                "student:S-1",
                "guest_student:G 1:x",
                "teacher:T-1",
                "user:",
                "applicant:a\u{1}",
                &format!("student:{}", "s".repeat(101)),
            ],
        );
    }

    #[test]
    fn the_documented_times_are_the_years_1900_to_9999_without_a_leap_second() {
        for (time, ok) in [
            ("2026-12-03T10:00:00Z", true),
            ("1900-01-01T00:00:00Z", true),
            ("1900-01-01T00:30:00+01:00", false),
            ("9999-12-31T23:59:59Z", true),
            ("9999-12-31T23:59:59-01:00", false),
            ("10000-01-01T00:00:00Z", false),
            ("2026-12-31T23:59:60Z", false),
        ] {
            assert_eq!(matches(DATE_TIME, time), ok, "{time}");
        }
    }
}
