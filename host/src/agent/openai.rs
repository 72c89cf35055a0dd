//! The OpenAI-compatible Chat Completions backend (OpenAI, Ollama, vLLM,
//! llama.cpp server, LM Studio): `POST {base}/chat/completions` with `tools`.
//!
//! Plain HTTP/1.1 over hyper, TLS by rustls with the webpki roots: the same
//! stack wasmtime-wasi-http links, so the client adds nothing to the build.

use super::Mode;
use super::model::{BoxFuture, Message, Model, Request, Role, Sampling, ToolCall};
use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http::{Uri, header};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A chat-completions client for one model.
#[derive(Clone)]
pub struct OpenAi {
    base: String,
    model: String,
    api_key: Option<String>,
    /// The limit on one HTTP exchange.
    pub timeout: Duration,
    /// How often a 429, a 5xx or a failed connection is retried.
    pub retries: u32,
    /// The wait before the first retry; it doubles each time (a `Retry-After` wins).
    pub backoff: Duration,
    /// Sent with every request (`temperature`, `top_p`, `seed`, `max_tokens`).
    pub sampling: Sampling,
}

impl OpenAi {
    /// The default base URL, when neither `--base-url` nor `OPENAI_BASE_URL` is set.
    pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

    /// A client for `model` at `base_url` (`http://localhost:11434/v1` for Ollama).
    pub fn new(base_url: &str, model: &str, api_key: Option<String>) -> Result<Self> {
        let base = base_url.trim_end_matches('/').to_string();
        let uri: Uri = base
            .parse()
            .with_context(|| format!("the model base URL `{base_url}` is not a URL"))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            bail!(
                "the model base URL `{base_url}` must start with http:// or https:// and name a host"
            );
        }
        if model.trim().is_empty() {
            bail!("the model name is empty");
        }
        Ok(Self {
            base,
            model: model.to_string(),
            api_key: api_key.filter(|k| !k.is_empty()),
            timeout: Duration::from_secs(120),
            retries: 3,
            backoff: Duration::from_millis(500),
            sampling: Sampling::default(),
        })
    }

    /// The request body for a conversation.
    pub fn body(&self, request: &Request<'_>) -> Value {
        let messages: Vec<Value> = request.messages.iter().map(wire_message).collect();
        let mut body = json!({ "model": self.model, "messages": messages });
        let Sampling {
            temperature,
            top_p,
            seed,
            max_tokens,
        } = self.sampling;
        let set = [
            ("temperature", temperature.map(Value::from)),
            ("top_p", top_p.map(Value::from)),
            ("seed", seed.map(Value::from)),
            ("max_tokens", max_tokens.map(Value::from)),
        ];
        for (key, value) in set {
            if let Some(value) = value {
                body[key] = value;
            }
        }
        if request.mode == Mode::Tools && !request.tools.is_empty() {
            let tools: Vec<Value> = request
                .tools
                .iter()
                .map(|t| json!({"type": "function", "function": t}))
                .collect();
            body["tools"] = Value::Array(tools);
        }
        body
    }

    async fn chat(&self, request: &Request<'_>) -> Result<Message> {
        let body = serde_json::to_vec(&self.body(request))?;
        let url = format!("{}/chat/completions", self.base);
        let mut attempt = 0;
        loop {
            let backoff = self.backoff * 2u32.saturating_pow(attempt);
            // What happened, and how long to wait if it is worth another try.
            let (retry, wait) =
                match tokio::time::timeout(self.timeout, self.post(&url, body.clone())).await {
                    Ok(Ok((200..=299, _, text))) => {
                        return parse_reply(&text).with_context(|| {
                            format!("the model at `{url}` gave an answer witbox cannot read")
                        });
                    }
                    Ok(Ok((status @ (429 | 500..=599), retry_after, text))) => (
                        Err(self.refusal(status, &text, request, attempt)),
                        retry_after.unwrap_or(backoff),
                    ),
                    Ok(Ok((status, _, text))) => {
                        return Err(self.refusal(status, &text, request, attempt));
                    }
                    Ok(Err(e)) => (
                        Err(e.context(format!("failed to reach the model at `{url}`"))),
                        backoff,
                    ),
                    Err(_) => (
                        Err(anyhow::anyhow!(
                            "the model at `{url}` did not answer within {} s ({} attempts)",
                            self.timeout.as_secs_f64(),
                            attempt + 1
                        )),
                        backoff,
                    ),
                };
            if attempt >= self.retries {
                return retry;
            }
            if let Err(e) = &retry
                && std::env::var_os("WITBOX_DEBUG").is_some()
            {
                log_line!("[witbox] {e:#}; retrying in {} ms", wait.as_millis());
            }
            attempt += 1;
            tokio::time::sleep(wait).await;
        }
    }

    /// The error for a non-success answer that will not be retried.
    fn refusal(
        &self,
        status: u16,
        text: &str,
        request: &Request<'_>,
        attempt: u32,
    ) -> anyhow::Error {
        let said = serde_json::from_str::<Value>(text)
            .ok()
            .and_then(|v| {
                let e = v.get("error")?;
                e.get("message")
                    .and_then(Value::as_str)
                    .or(e.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| clip(text, 300));
        let model = &self.model;
        if (400..500).contains(&status)
            && request.mode == Mode::Tools
            && said.to_lowercase().contains("tool")
        {
            return anyhow!(
                "the model `{model}` does not support tool calling (HTTP {status}: {said}); try `--mode code`, which needs no tool-call support"
            );
        }
        match status {
            401 | 403 => anyhow!(
                "the model server refused the API key (HTTP {status}: {said}); set `OPENAI_API_KEY` or `--api-key`"
            ),
            404 => anyhow!(
                "the model server has no model `{model}` or no `/chat/completions` at `{}` (HTTP 404: {said})",
                self.base
            ),
            429 | 500..=599 => anyhow!(
                "the model server kept failing (HTTP {status} after {} attempts): {said}",
                attempt + 1
            ),
            _ => anyhow!("the model server rejected the request (HTTP {status}): {said}"),
        }
    }

    /// One POST; returns the status, a `Retry-After` in seconds, and the body.
    async fn post(&self, url: &str, body: Vec<u8>) -> Result<(u16, Option<Duration>, String)> {
        let uri: Uri = url
            .parse()
            .with_context(|| format!("`{url}` is not a URL"))?;
        let https = uri.scheme_str() == Some("https");
        let host = uri
            .host()
            .context("the URL has no host")?
            .trim_matches(['[', ']']);
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let mut builder = http::Request::post(uri.path_and_query().map_or("/", |p| p.as_str()))
            .header(header::HOST, uri.authority().map_or(host, |a| a.as_str()))
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                header::USER_AGENT,
                concat!("witbox/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(key) = &self.api_key {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let request = builder.body(Full::new(Bytes::from(body)))?;
        let tcp = TcpStream::connect((host, port))
            .await
            .with_context(|| format!("failed to connect to {host}:{port}"))?;
        let response = if https {
            let roots = tokio_rustls::rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.into(),
            };
            let config = tokio_rustls::rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth();
            let name = tokio_rustls::rustls::pki_types::ServerName::try_from(host.to_string())
                .with_context(|| format!("`{host}` is not a valid TLS server name"))?;
            let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(name, tcp)
                .await
                .with_context(|| format!("TLS with {host} failed"))?;
            exchange(tls, request).await?
        } else {
            exchange(tcp, request).await?
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s.min(60)));
        let text = String::from_utf8_lossy(response.body()).into_owned();
        Ok((status, retry_after, text))
    }
}

/// Sends one request on a fresh HTTP/1.1 connection and reads the whole answer.
async fn exchange<IO>(io: IO, request: http::Request<Full<Bytes>>) -> Result<http::Response<Bytes>>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(wasmtime_wasi_http::io::TokioIo::new(io)).await?;
    tokio::spawn(connection);
    let response = sender.send_request(request).await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(http::Response::from_parts(parts, body))
}

/// A message in the Chat Completions shape.
fn wire_message(m: &Message) -> Value {
    let mut out = json!({ "role": m.role, "content": m.content });
    if !m.tool_calls.is_empty() {
        out["tool_calls"] = m
            .tool_calls
            .iter()
            .map(|c| {
                json!({"id": c.id, "type": "function",
                       "function": {"name": c.name, "arguments": c.arguments}})
            })
            .collect();
        if m.content.is_empty() {
            out["content"] = Value::Null;
        }
    }
    if let Some(id) = &m.tool_call_id {
        out["tool_call_id"] = json!(id);
    }
    out
}

/// The assistant message of a Chat Completions answer.
pub fn parse_reply(text: &str) -> Result<Message> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| anyhow!("the answer is not JSON ({e}): {}", clip(text, 200)))?;
    let message = v.pointer("/choices/0/message").ok_or_else(|| {
        anyhow!(
            "the answer has no `choices[0].message`: {}",
            clip(text, 200)
        )
    })?;
    // `content` is a string, null, or (some servers) a list of text parts.
    let content = match message.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    };
    let mut reply = Message::assistant(content);
    for (i, call) in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let function = call.get("function").unwrap_or(&Value::Null);
        // The arguments are a JSON text; some servers send the object itself.
        let arguments = match function.get("arguments") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        reply.tool_calls.push(ToolCall {
            id: call
                .get("id")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map_or_else(|| format!("call_{}", i + 1), str::to_string),
            name: function
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            arguments,
        });
    }
    debug_assert_eq!(reply.role, Role::Assistant);
    Ok(reply)
}

fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.trim().to_string();
    }
    format!("{}…", crate::text::head(text, max).trim())
}

impl Model for OpenAi {
    fn describe(&self) -> String {
        format!("{} at {}", self.model, self.base)
    }

    fn sampling(&self) -> Option<Sampling> {
        Some(self.sampling)
    }

    fn complete<'a>(&'a self, request: &'a Request<'a>) -> BoxFuture<'a, Result<Message>> {
        Box::pin(self.chat(request))
    }
}
