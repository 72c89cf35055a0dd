//! The `weather` tool: geocodes a city, then asks for its current weather, over
//! `wasi:http` only (the host decides which hosts it may reach).

wit_bindgen::generate!({ path: "wit", world: "weather", generate_all });

use exports::witbox::weather::forecast::{Conditions, Guest, UpstreamError, WeatherError};
use serde_json::Value;
use wasi::config::store;
use wasip2::http::types::{ErrorCode, Fields, OutgoingRequest, Scheme};

const GEOCODING_URL: &str = "https://geocoding-api.open-meteo.com";
const FORECAST_URL: &str = "https://api.open-meteo.com";
const MAX_BODY: usize = 1 << 20;

struct Weather;

impl Guest for Weather {
    fn current(city: String) -> Result<Conditions, WeatherError> {
        let city = city.trim();
        if city.is_empty() {
            return Err(WeatherError::CityNotFound("the city name is empty".into()));
        }
        let geo = get_json(&format!(
            "{}/v1/search?name={}&count=1&language=en&format=json",
            setting("geocoding-url", GEOCODING_URL),
            encode(city)
        ))?;
        let place = geo["results"]
            .get(0)
            .ok_or_else(|| WeatherError::CityNotFound(format!("no city named `{city}` is known")))?;
        let latitude = number(place, "latitude")?;
        let longitude = number(place, "longitude")?;
        let now = get_json(&format!(
            "{}/v1/forecast?latitude={latitude}&longitude={longitude}&current=temperature_2m,wind_speed_10m,weather_code",
            setting("forecast-url", FORECAST_URL)
        ))?;
        let current = &now["current"];
        let code = number(current, "weather_code")?;
        if !(0.0..=99.0).contains(&code) || code.fract() != 0.0 {
            return Err(WeatherError::BadResponse(format!("`weather_code` {code} is not a WMO code")));
        }
        Ok(Conditions {
            city: place["name"].as_str().unwrap_or(city).to_string(),
            country: place["country"].as_str().unwrap_or("").to_string(),
            latitude,
            longitude,
            temperature_c: number(current, "temperature_2m")?,
            wind_speed_kmh: number(current, "wind_speed_10m")?,
            weather_code: code as u16,
            description: describe(code as u16).to_string(),
        })
    }
}

export!(Weather);

fn setting(key: &str, default: &str) -> String {
    match store::get(key) {
        Ok(Some(v)) if !v.is_empty() => v.trim_end_matches('/').to_string(),
        _ => default.to_string(),
    }
}

fn number(v: &Value, key: &str) -> Result<f64, WeatherError> {
    v[key]
        .as_f64()
        .ok_or_else(|| WeatherError::BadResponse(format!("`{key}` is missing or not a number")))
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay as they are).
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn get_json(url: &str) -> Result<Value, WeatherError> {
    let (status, body) = get(url)?;
    if !(200..300).contains(&status) {
        let body = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        return Err(WeatherError::Upstream(UpstreamError { status, body }));
    }
    serde_json::from_slice(&body)
        .map_err(|e| WeatherError::BadResponse(format!("the answer from {url} is not JSON: {e}")))
}

fn get(url: &str) -> Result<(u16, Vec<u8>), WeatherError> {
    let bad = |what: &str| WeatherError::BadResponse(format!("{what} in `{url}`"));
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let request = OutgoingRequest::new(Fields::new());
    let scheme = match scheme {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        _ => return Err(bad("unsupported scheme")),
    };
    request.set_scheme(Some(&scheme)).map_err(|()| bad("bad scheme"))?;
    request.set_authority(Some(authority)).map_err(|()| bad("bad host"))?;
    request.set_path_with_query(Some(path)).map_err(|()| bad("bad path"))?;
    let pending = wasip2::http::outgoing_handler::handle(request, None).map_err(net_error)?;
    pending.subscribe().block();
    let response = pending
        .get()
        .ok_or_else(|| bad("no response"))?
        .map_err(|()| bad("response taken twice"))?
        .map_err(net_error)?;
    let status = response.status();
    let body = response.consume().map_err(|()| bad("no body"))?;
    let stream = body.stream().map_err(|()| bad("no body stream"))?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(wasip2::io::streams::StreamError::Closed) => break,
            Err(e) => return Err(WeatherError::Unreachable(format!("reading the answer failed: {e:?}"))),
        }
        if bytes.len() > MAX_BODY {
            return Err(WeatherError::BadResponse(format!("the answer is larger than {MAX_BODY} bytes")));
        }
    }
    Ok((status, bytes))
}

fn net_error(e: ErrorCode) -> WeatherError {
    match e {
        ErrorCode::HttpRequestDenied => {
            WeatherError::Denied("the host's policy does not allow this address".into())
        }
        other => WeatherError::Unreachable(format!("{other:?}")),
    }
}

fn describe(code: u16) -> &'static str {
    match code {
        0 => "clear sky",
        1 => "mainly clear",
        2 => "partly cloudy",
        3 => "overcast",
        45 | 48 => "fog",
        51..=55 => "drizzle",
        56 | 57 => "freezing drizzle",
        61..=65 => "rain",
        66 | 67 => "freezing rain",
        71..=75 => "snow fall",
        77 => "snow grains",
        80..=82 => "rain showers",
        85 | 86 => "snow showers",
        95 => "thunderstorm",
        96 | 99 => "thunderstorm with hail",
        _ => "unknown",
    }
}
