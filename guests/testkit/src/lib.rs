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
        std::net::TcpStream::connect(addr.as_str())
            .map(|_| "connected".to_string())
            .map_err(|e| e.to_string())
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

    #[allow(
        deprecated,
        reason = "`soft_link` is the only stable symlink call on WASI"
    )]
    fn symlink(target: String, link: String) -> Result<(), String> {
        std::fs::soft_link(target, link).map_err(|e| e.to_string())
    }

    fn hard_link(existing: String, link: String) -> Result<(), String> {
        std::fs::hard_link(existing, link).map_err(|e| e.to_string())
    }

    fn rename(existing: String, new_name: String) -> Result<(), String> {
        std::fs::rename(existing, new_name).map_err(|e| e.to_string())
    }

    fn write_file(path: String, bytes: u64, how: probe::WriteHow) -> Result<u64, String> {
        use probe::WriteHow;
        let data = vec![b'x'; bytes as usize];
        let show = |e: std::io::Error| e.to_string();
        match how {
            WriteHow::Create => std::fs::write(&path, &data).map_err(show)?,
            WriteHow::Append => std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(&path)
                .and_then(|mut f| f.write_all(&data))
                .map_err(show)?,
            WriteHow::AtEnd => write_at_end(&path, &data)?,
            WriteHow::StreamAtEnd => stream_at_end(&path, &data)?,
            WriteHow::Grow => std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .and_then(|f| f.set_len(f.metadata()?.len() + bytes))
                .map_err(show)?,
            WriteHow::Removed => {
                let mut f = std::fs::File::create(&path).map_err(show)?;
                std::fs::remove_file(&path).map_err(show)?;
                f.write_all(&data).map_err(show)?;
                return Ok(f.metadata().map_err(show)?.len());
            }
        }
        std::fs::metadata(&path).map(|m| m.len()).map_err(show)
    }
}

/// The file at `path` (created if needed), straight through `wasi:filesystem`.
fn open(path: &str) -> Result<wasip2::filesystem::types::Descriptor, String> {
    use wasip2::filesystem::types::{DescriptorFlags, OpenFlags, PathFlags};
    let (dir, rel) = wasip2::filesystem::preopens::get_directories()
        .into_iter()
        .filter_map(|(d, root)| {
            Some((
                d,
                path.strip_prefix(&root)?
                    .trim_start_matches('/')
                    .to_string(),
            ))
        })
        .next()
        .ok_or("no preopen holds the path")?;
    let flags = DescriptorFlags::READ | DescriptorFlags::WRITE;
    dir.open_at(PathFlags::empty(), &rel, OpenFlags::CREATE, flags)
        .map_err(|e| e.name().to_string())
}

/// `descriptor.write` at the end of the file (the standard library writes through
/// streams); errors are WASI's names.
fn write_at_end(path: &str, data: &[u8]) -> Result<(), String> {
    let file = open(path)?;
    let mut at = file.stat().map_err(|e| e.name().to_string())?.size;
    let mut left = data;
    while !left.is_empty() {
        let n = file.write(left, at).map_err(|e| e.name().to_string())?;
        if n == 0 {
            return Err("the write wrote nothing".into());
        }
        left = &left[n as usize..];
        at += n;
    }
    Ok(())
}

/// `write-via-stream` at the end of the file; a failed write is reported with the
/// code `filesystem-error-code` gives (wasi-libc, under the standard library,
/// turns every failed stream write into `EIO`).
fn stream_at_end(path: &str, data: &[u8]) -> Result<(), String> {
    use wasip2::io::streams::StreamError;
    let file = open(path)?;
    let at = file.stat().map_err(|e| e.name().to_string())?.size;
    let stream = file
        .write_via_stream(at)
        .map_err(|e| e.name().to_string())?;
    for chunk in data.chunks(4096) {
        match stream.blocking_write_and_flush(chunk) {
            Ok(()) => {}
            Err(StreamError::Closed) => return Err("closed".into()),
            Err(StreamError::LastOperationFailed(e)) => {
                return Err(match wasip2::filesystem::types::filesystem_error_code(&e) {
                    Some(code) => code.name().to_string(),
                    None => e.to_debug_string(),
                });
            }
        }
    }
    Ok(())
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
    request
        .set_scheme(Some(&scheme))
        .map_err(|()| "bad scheme")?;
    request
        .set_authority(Some(authority))
        .map_err(|()| "bad authority")?;
    request
        .set_path_with_query(Some(path))
        .map_err(|()| "bad path")?;
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
