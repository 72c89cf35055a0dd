//! A guest built to break the host's limits and probe its sandbox; used only by tests.

wit_bindgen::generate!({ path: "wit", world: "testkit", generate_all });

use exports::witbox::testkit::{probe, types};
use std::io::Write;
use wasip2::http::types::{ErrorCode, Fields, OutgoingRequest, Scheme};

struct Testkit;

impl probe::Guest for Testkit {
    fn spin() {
        let mut x: u64 = 0;
        loop {
            x = std::hint::black_box(x.wrapping_add(1));
        }
    }

    fn grow(mb: u32) -> u32 {
        let chunks: Vec<Vec<u8>> = (0..mb).map(|_| vec![1u8; 1 << 20]).collect();
        std::hint::black_box(&chunks);
        mb
    }

    fn flood(bytes: u64) {
        let line = [b'x'; 1024];
        let mut out = std::io::stdout().lock();
        let mut left = bytes;
        while left > 0 {
            let n = left.min(line.len() as u64) as usize;
            if out.write_all(&line[..n]).is_err() {
                return;
            }
            left -= n as u64;
        }
        let _ = out.flush();
    }

    fn big_result(bytes: u32) -> String {
        "y".repeat(bytes as usize)
    }

    fn crash(message: String) {
        panic!("{message}");
    }

    fn nap(ms: u32) {
        std::thread::sleep(std::time::Duration::from_millis(ms.into()));
    }

    fn read_file(path: String) -> Result<String, String> {
        std::fs::read_to_string(&path).map_err(|e| e.to_string())
    }

    fn get_env(name: String) -> Option<String> {
        std::env::var(name).ok()
    }

    fn env_count() -> u32 {
        std::env::vars().count() as u32
    }

    fn call(name: String, args: String) -> Result<String, String> {
        witbox::agent::host::call_tool(&name, &args).map_err(|e| format!("{e:?}"))
    }

    fn connect(addr: String) -> Result<String, String> {
        std::net::TcpStream::connect(addr.as_str()).map(|_| "connected".to_string()).map_err(|e| e.to_string())
    }

    fn fetch(url: String) -> Result<String, String> {
        fetch(&url, Fields::new())
    }

    fn fetch_with_header(url: String, name: String, value: String) -> Result<String, String> {
        let entry = (name.clone(), value.clone().into_bytes());
        let from_list = Fields::from_list(&[entry]).map(|_| ());
        let fields = Fields::new();
        let set = fields.set(&name, &[value.clone().into_bytes()]);
        let append = fields.append(&name, value.as_bytes());
        let tried = format!("from-list: {from_list:?}, set: {set:?}, append: {append:?}");
        fetch(&url, fields).map(|r| format!("{tried}\n{r}"))
    }
}

impl types::Guest for Testkit {
    fn echo(value: types::Everything) -> types::Everything {
        value
    }

    fn add_small(x: u8, y: Option<u8>) -> Result<u8, String> {
        x.checked_add(y.unwrap_or(0))
            .ok_or_else(|| format!("{x} + {} does not fit in a u8", y.unwrap_or(0)))
    }
}

export!(Testkit);

fn fetch(url: &str, headers: Fields) -> Result<String, String> {
    let (scheme, rest) = url.split_once("://").ok_or("url needs a scheme")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let request = OutgoingRequest::new(headers);
    let scheme = match scheme {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => Scheme::Other(other.to_string()),
    };
    request.set_scheme(Some(&scheme)).map_err(|()| "bad scheme")?;
    request.set_authority(Some(authority)).map_err(|()| "bad authority")?;
    request.set_path_with_query(Some(path)).map_err(|()| "bad path")?;
    let response = wasip2::http::outgoing_handler::handle(request, None).map_err(show)?;
    response.subscribe().block();
    let response = response
        .get()
        .ok_or("no response")?
        .map_err(|()| "response taken twice")?
        .map_err(show)?;
    let status = response.status();
    let body = response.consume().map_err(|()| "no body")?;
    let stream = body.stream().map_err(|()| "no body stream")?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(wasip2::io::streams::StreamError::Closed) => break,
            Err(e) => return Err(format!("reading the body failed: {e:?}")),
        }
    }
    Ok(format!("{status} {}", String::from_utf8_lossy(&bytes)))
}

fn show(e: ErrorCode) -> String {
    format!("{e:?}")
}
