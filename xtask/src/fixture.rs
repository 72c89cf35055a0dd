//! A tiny Open-Meteo-shaped HTTP server on 127.0.0.1 for the demo and the tests.
//! Standard library only, so both the xtask and the test binary can include it.
//!
//! - `GET /v1/search?name=Paris…` answers like the geocoding API (a few known cities).
//! - `GET /v1/forecast?latitude=…&longitude=…` answers like the forecast API.
//! - A server made with [`Fixture::redirecting`] answers every request with a 302 to another address.
//! - A server made with [`Fixture::holding`] answers nothing until [`Fixture::release`].

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// A running fixture server; it stops when dropped.
pub struct Fixture {
    /// Where it listens.
    pub addr: SocketAddr,
    hits: Arc<Mutex<Vec<String>>>,
    hosts: Arc<Mutex<Vec<String>>>,
    held: Held,
    stop: Arc<AtomicBool>,
}

/// Whether requests wait before they are answered.
type Held = Arc<(Mutex<bool>, Condvar)>;

/// (name, country, latitude, longitude, temperature, wind, WMO code)
const CITIES: &[(&str, &str, f64, f64, f64, f64, u32)] = &[
    ("Paris", "France", 48.85341, 2.3488, 21.5, 11.2, 3),
    (
        "London",
        "United Kingdom",
        51.50853,
        -0.12574,
        14.0,
        19.4,
        61,
    ),
    ("Tokyo", "Japan", 35.6895, 139.69171, 26.3, 7.5, 0),
    ("São Paulo", "Brazil", -23.5475, -46.63611, 24.8, 9.0, 80),
];

impl Fixture {
    /// Starts an Open-Meteo-shaped server on `127.0.0.1:0`.
    pub fn start() -> Self {
        Self::start_on(Ipv4Addr::LOCALHOST.into())
    }

    /// Starts an Open-Meteo-shaped server on port 0 of `ip` (a loopback address).
    pub fn start_on(ip: IpAddr) -> Self {
        Self::serve(ip, None, false)
    }

    /// Starts a server that redirects every request to `to` (same path).
    pub fn redirecting(to: SocketAddr) -> Self {
        Self::serve(Ipv4Addr::LOCALHOST.into(), Some(to), false)
    }

    /// Starts a server that holds every request (after counting it) until [`Self::release`].
    pub fn holding() -> Self {
        Self::serve(Ipv4Addr::LOCALHOST.into(), None, true)
    }

    /// Answers the held requests, and the ones to come.
    pub fn release(&self) {
        let (lock, cvar) = &*self.held;
        *lock.lock().unwrap() = false;
        cvar.notify_all();
    }

    fn serve(ip: IpAddr, redirect: Option<SocketAddr>, hold: bool) -> Self {
        let listener = TcpListener::bind((ip, 0))
            .unwrap_or_else(|e| panic!("failed to bind {ip} port 0: {e}"));
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let hosts = Arc::new(Mutex::new(Vec::new()));
        let held: Held = Arc::new((Mutex::new(hold), Condvar::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, hs, hd, s) = (hits.clone(), hosts.clone(), held.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (h, hs, hd) = (h.clone(), hs.clone(), hd.clone());
                std::thread::spawn(move || handle(stream, &h, &hs, &hd, redirect));
            }
        });
        Self {
            addr,
            hits,
            hosts,
            held,
            stop,
        }
    }

    /// `http://127.0.0.1:PORT` (`http://[::1]:PORT` on IPv6)
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The request lines received so far (`GET /v1/search?... HTTP/1.1`).
    pub fn hits(&self) -> Vec<String> {
        self.hits.lock().unwrap().clone()
    }

    /// Every `Host` header received so far, in order.
    pub fn hosts(&self) -> Vec<String> {
        self.hosts.lock().unwrap().clone()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.release();
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr); // wake the accept loop
    }
}

/// Reads one HTTP/1.1 request: its head (request line and headers, as sent)
/// and its body (`Content-Length` bytes); `None` if the client closed first.
/// For the scripted model servers of the eval and the tests.
pub fn read_request(stream: &TcpStream) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        if let Some(v) = line.to_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(Some((head, body)))
}

/// Answers with a JSON body and closes the connection.
pub fn write_json(mut stream: &TcpStream, status: u16, body: &str) -> std::io::Result<()> {
    let response = format!(
        "HTTP/1.1 {status} Scripted\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes())
}

fn handle(
    stream: TcpStream,
    hits: &Mutex<Vec<String>>,
    hosts: &Mutex<Vec<String>>,
    held: &Held,
    redirect: Option<SocketAddr>,
) {
    let mut reader = BufReader::new(&stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() || request_line.is_empty() {
        return;
    }
    let mut header = String::new();
    while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("host")
        {
            hosts.lock().unwrap().push(value.trim().to_string());
        }
        header.clear();
    }
    let request_line = request_line.trim().to_string();
    hits.lock().unwrap().push(request_line.clone());
    let (lock, cvar) = &**held;
    drop(cvar.wait_while(lock.lock().unwrap(), |held| *held).unwrap());
    let target = request_line.split(' ').nth(1).unwrap_or("/");
    let (status, extra, body) = match redirect {
        Some(to) => (
            302,
            format!("Location: http://{to}{target}\r\n"),
            String::new(),
        ),
        None => {
            let (status, body) = route(target);
            (status, String::new(), body)
        }
    };
    let reason = match status {
        200 => "OK",
        302 => "Found",
        400 => "Bad Request",
        _ => "Not Found",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
        body.len()
    );
    let mut stream = stream;
    let _ = stream.write_all(response.as_bytes());
}

fn route(target: &str) -> (u16, String) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let param = |key: &str| {
        query.split('&').find_map(|kv| {
            kv.split_once('=')
                .filter(|(k, _)| *k == key)
                .map(|(_, v)| decode(v))
        })
    };
    match path {
        "/v1/search" => {
            let name = param("name").unwrap_or_default();
            match CITIES.iter().find(|c| c.0.eq_ignore_ascii_case(&name)) {
                Some(c) => (
                    200,
                    format!(
                        r#"{{"results":[{{"id":1,"name":"{}","latitude":{},"longitude":{},"country":"{}","timezone":"UTC"}}],"generationtime_ms":0.5}}"#,
                        c.0, c.2, c.3, c.1
                    ),
                ),
                None => (200, r#"{"generationtime_ms":0.5}"#.to_string()),
            }
        }
        "/v1/forecast" => {
            let lat: Option<f64> = param("latitude").and_then(|v| v.parse().ok());
            let lon: Option<f64> = param("longitude").and_then(|v| v.parse().ok());
            let (Some(lat), Some(lon)) = (lat, lon) else {
                return (
                    400,
                    r#"{"error":true,"reason":"latitude and longitude are required"}"#.to_string(),
                );
            };
            let city = CITIES
                .iter()
                .find(|c| (c.2 - lat).abs() < 0.01 && (c.3 - lon).abs() < 0.01);
            let (t, w, code) = city.map(|c| (c.4, c.5, c.6)).unwrap_or((10.0, 5.0, 2));
            (
                200,
                format!(
                    r#"{{"latitude":{lat},"longitude":{lon},"current_units":{{"temperature_2m":"°C","wind_speed_10m":"km/h"}},"current":{{"time":"2026-11-23T12:00","interval":900,"temperature_2m":{t},"wind_speed_10m":{w},"weather_code":{code}}}}}"#
                ),
            )
        }
        _ => (404, r#"{"error":true,"reason":"not found"}"#.to_string()),
    }
}

/// Decodes `%XX` and `+` in a query value.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
