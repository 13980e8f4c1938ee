//! Fetching a picture straight from a camera or NVR (Hikvision ISAPI
//! `/ISAPI/Streaming/channels/<N>/picture`, Blue Iris `/image/<cam>`, …).
//!
//! Cameras use HTTP Digest auth (Basic on some): the first request goes without
//! credentials, and a 401's `WWW-Authenticate` challenge is answered once with the
//! `digest_auth` crate. Hikvision reports failures as HTTP 200 with an XML
//! `<ResponseStatus>` body, so a 200 is only a picture if its bytes say so (`FF D8`).
//! Redirects are followed on the camera's own host and port only.

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::StatusCode;

use super::excerpt;
use super::http::{is_picture, parse_url, Answer, FetchError, Http};
use crate::event::Credentials;
use crate::xml::xml_text;

/// GET `url`, answering a Digest or Basic challenge with `credentials`. `key` is the config
/// key of the camera, for error messages.
pub async fn fetch(
    http: &Http,
    url: &str,
    credentials: Option<&Credentials>,
    key: &str,
) -> Result<Bytes, FetchError> {
    let (parsed, shown) = parse_url(url)?;
    let redirect_fix = || {
        format!(
            "a camera is fetched only from its own host and port; set {key}.url to the address it redirects to"
        )
    };
    let mut answer = http
        .send(http.client.get(parsed.clone()), &shown)
        .await
        .map_err(|e| e.redirect_fix(redirect_fix))?;
    if answer.status == StatusCode::UNAUTHORIZED {
        let Some(creds) = credentials else {
            return Err(FetchError::Login {
                url: shown,
                what: "the camera wants a login (401)".into(),
                fix: format!("set {key}.username and {key}.password"),
            });
        };
        let challenges: Vec<String> = answer
            .headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        let authorization =
            authorization(&challenges, &parsed, creds).map_err(|why| FetchError::Login {
                url: shown.clone(),
                what: why,
                fix: format!("check {key}.url"),
            })?;
        answer = http
            .send(
                http.client.get(parsed).header(AUTHORIZATION, authorization),
                &shown,
            )
            .await
            .map_err(|e| e.redirect_fix(redirect_fix))?;
        if answer.status == StatusCode::UNAUTHORIZED {
            return Err(FetchError::Login {
                url: shown,
                what: format!(
                    "the camera refused the login for user {:?} (401)",
                    creds.username
                ),
                fix: format!("check {key}.username and {key}.password (or {key}.password_file)"),
            });
        }
    }
    if let Err(message) = check_picture(&answer) {
        if answer.status.is_success() {
            return Err(FetchError::Camera {
                url: shown,
                message,
                key: key.to_owned(),
            });
        }
    }
    answer.into_body(&shown)
}

/// The `Authorization` value answering the first Digest (preferred) or Basic challenge.
fn authorization(
    challenges: &[String],
    url: &reqwest::Url,
    creds: &Credentials,
) -> Result<String, String> {
    let digest = challenges
        .iter()
        .find(|c| c.trim_start().to_ascii_lowercase().starts_with("digest"));
    if let Some(challenge) = digest {
        let uri = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        let context =
            digest_auth::AuthContext::new(creds.username.as_str(), creds.password.expose(), uri);
        let mut prompt = digest_auth::parse(challenge)
            .map_err(|e| format!("the camera's Digest challenge cannot be answered ({e})"))?;
        let answer = prompt
            .respond(&context)
            .map_err(|e| format!("the camera's Digest challenge cannot be answered ({e})"))?;
        return Ok(answer.to_header_string());
    }
    if challenges
        .iter()
        .any(|c| c.trim_start().to_ascii_lowercase().starts_with("basic"))
    {
        use base64::Engine;
        let raw = format!("{}:{}", creds.username, creds.password.expose());
        return Ok(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        ));
    }
    Err(format!(
        "the camera answered 401 without a Digest or Basic challenge ({challenges:?})"
    ))
}

/// Ok for a JPEG (`FF D8`) or another image format the decoder knows (PNG, WebP); else the
/// camera's own message (`statusString` of an XML `ResponseStatus`) or a description of the
/// answer that quotes no more than a short excerpt of text.
fn check_picture(answer: &Answer) -> Result<(), String> {
    let body = &answer.body;
    if is_picture(body) {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(4096)]);
    if let Some(status) = xml_text(&text, "statusString") {
        let mut message = format!("\"{}\"", excerpt::excerpt(&status));
        if let Some(sub) = xml_text(&text, "subStatusCode") {
            message.push_str(&format!(" ({})", excerpt::excerpt(&sub)));
        }
        if let Some(code) = xml_text(&text, "statusCode") {
            message.push_str(&format!(", statusCode {}", excerpt::excerpt(&code)));
        }
        return Err(message);
    }
    Err(format!("not a JPEG: {}", answer.describe()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(content_type: &str, body: &[u8]) -> Answer {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::CONTENT_TYPE, content_type.parse().unwrap());
        Answer {
            url: reqwest::Url::parse("http://cam/picture").unwrap(),
            status: StatusCode::OK,
            headers,
            body: Bytes::copy_from_slice(body),
        }
    }

    #[test]
    fn xml_error_bodies_quote_the_camera() {
        let xml = include_bytes!("../../tests/fixtures/hikvision-picture-error.xml");
        let why = check_picture(&answer("application/xml", xml)).unwrap_err();
        assert_eq!(why, "\"Device Error\" (deviceError), statusCode 3");
    }

    #[test]
    fn jpegs_pass_and_garbage_is_described() {
        let jpeg = answer("image/jpeg", &[0xFF, 0xD8, 0xFF, 0xE0, 0, 0]);
        assert!(check_picture(&jpeg).is_ok());
        let why = check_picture(&answer("text/html", b"<html>login</html>")).unwrap_err();
        assert!(
            why.contains("not a JPEG")
                && why.contains("18 bytes of text/html, beginning \"<html>login"),
            "{why}"
        );
        let why = check_picture(&answer("application/octet-stream", b"\0\x01secret")).unwrap_err();
        assert_eq!(why, "not a JPEG: 8 bytes of application/octet-stream");
    }

    #[test]
    fn digest_challenge_is_answered_for_the_path_and_query() {
        let url =
            reqwest::Url::parse("http://cam/ISAPI/Streaming/channels/101/picture?x=1").unwrap();
        let creds = Credentials {
            username: "admin".into(),
            password: crate::secret::Secret::new("pw"),
        };
        let h = authorization(
            &[r#"Digest realm="IP Camera(C1234)", qop="auth", nonce="abc", algorithm=MD5"#.into()],
            &url,
            &creds,
        )
        .unwrap();
        assert!(h.starts_with("Digest "), "{h}");
        assert!(
            h.contains(r#"uri="/ISAPI/Streaming/channels/101/picture?x=1""#),
            "{h}"
        );
        assert!(
            h.contains(r#"username="admin""#) && !h.contains("pw\""),
            "{h}"
        );
        let b = authorization(&[r#"Basic realm="x""#.into()], &url, &creds).unwrap();
        assert_eq!(b, "Basic YWRtaW46cHc=");
    }
}
