//! Errors in OpenAI's JSON shape, `{"error": {"message", "type", "param", "code"}}`, with the
//! status code OpenAI uses for each case, so that clients (the official SDKs raise a typed
//! exception per status) react as they would against OpenAI.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Seconds a client is told to wait (`Retry-After`) when the queue is full: about the time
/// a slot takes to free up on a small model.
pub const RETRY_AFTER_SECONDS: u32 = 1;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<&'static str>,
    pub code: Option<&'static str>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

impl ApiError {
    /// 400: the request is malformed or asks for something impossible.
    pub fn invalid(message: impl Into<String>, param: Option<&'static str>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param,
            code: None,
        }
    }

    /// 400 with OpenAI's code for a prompt (plus completion) longer than the context window.
    pub fn context_exceeded(message: impl Into<String>) -> ApiError {
        ApiError {
            code: Some("context_length_exceeded"),
            ..ApiError::invalid(message, Some("messages"))
        }
    }

    /// 401: a missing or wrong API key.
    pub fn unauthorized() -> ApiError {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: "Incorrect or missing API key: send the header 'Authorization: Bearer KEY'."
                .into(),
            kind: "invalid_request_error",
            param: None,
            code: Some("invalid_api_key"),
        }
    }

    /// 404 for a model this server does not serve.
    pub fn unknown_model(name: &str, served: &str) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!("The model '{name}' does not exist; this server serves '{served}'."),
            kind: "invalid_request_error",
            param: Some("model"),
            code: Some("model_not_found"),
        }
    }

    /// 503 when the queue of waiting requests is full (sent with `Retry-After`), or while the
    /// server shuts down.
    pub fn overloaded(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: message.into(),
            kind: "server_error",
            param: None,
            code: Some("server_overloaded"),
        }
    }

    /// 500: the model failed on a request that passed validation (should not happen).
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
            kind: "server_error",
            param: None,
            code: None,
        }
    }

    /// Any other status, for responses produced below the handlers (413 from the body limit,
    /// 404 for unknown routes, 405).
    pub fn from_status(status: StatusCode) -> ApiError {
        let (message, code) = match status {
            StatusCode::PAYLOAD_TOO_LARGE => ("The request body is too large.", None),
            StatusCode::REQUEST_TIMEOUT => ("The request body did not arrive in time.", None),
            StatusCode::NOT_FOUND => ("Unknown route.", Some("unknown_url")),
            StatusCode::METHOD_NOT_ALLOWED => ("Method not allowed on this route.", None),
            _ => (status.canonical_reason().unwrap_or("error"), None),
        };
        ApiError {
            status,
            message: message.into(),
            kind: if status.is_server_error() {
                "server_error"
            } else {
                "invalid_request_error"
            },
            param: None,
            code,
        }
    }

    /// The JSON body alone (for an error event inside an SSE stream).
    pub fn json(&self) -> String {
        serde_json::to_string(&Body {
            error: Inner {
                message: &self.message,
                kind: self.kind,
                param: self.param,
                code: self.code,
            },
        })
        .unwrap_or_default()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            self.json(),
        )
            .into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        r
    }
}

/// Middleware: turns an error response that is not JSON (made by a layer below the handlers,
/// such as the body limit's 413, or by the router's 405) into OpenAI's error shape.
pub async fn json_errors(r: Response) -> Response {
    let is_json = r
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if (r.status().is_client_error() || r.status().is_server_error()) && !is_json {
        return ApiError::from_status(r.status()).into_response();
    }
    r
}
