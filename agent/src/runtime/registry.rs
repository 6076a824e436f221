//! Pulling an image from an OCI registry (the distribution API: manifest, then config and
//! layer blobs) into containerd's content store, with Basic or Bearer-token auth from
//! the pod's `kubernetes.io/dockerconfigjson` pull secrets.
//!
//! Registries are spoken to over plain HTTP only when listed with `--plain-http-registry`
//! (containerd's "insecure registry"); HTTPS registries are not supported yet and say so.

use std::time::Duration;

use base64::Engine;
use http_body_util::{BodyExt, Empty};
use hyper::{Request, StatusCode, body::Bytes, header};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Media types a pull accepts for a manifest.
const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// How long one registry request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a pull failed (the text goes into the container's ErrImagePull message).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PullError {
    #[error(
        "registry {registry} is not listed with --plain-http-registry, and HTTPS registries are not supported yet"
    )]
    NoTransport { registry: String },
    #[error("GET {url}: {reason}")]
    Request { url: String, reason: String },
    #[error("GET {url}: {status}{hint}")]
    Status {
        url: String,
        status: u16,
        hint: String,
    },
    #[error("{what} from {url} does not match its digest {digest}")]
    Digest {
        what: String,
        url: String,
        digest: String,
    },
    #[error("the manifest of {image} is not valid: {reason}")]
    Manifest { image: String, reason: String },
}

/// An image reference split for the distribution API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryRef {
    /// `host[:port]` as written in the image name (`docker.io` for Docker Hub).
    pub registry: String,
    pub repository: String,
    /// A tag or a digest.
    pub reference: String,
}

impl RegistryRef {
    /// Splits a normalized reference (`host/repo:tag` or `host/repo@sha256:...`).
    pub fn parse(normalized: &str) -> Option<Self> {
        let (registry, rest) = normalized.split_once('/')?;
        let (repository, reference) = match rest.split_once('@') {
            Some((repository, digest)) => (repository, digest),
            None => rest.rsplit_once(':')?,
        };
        Some(Self {
            registry: registry.to_string(),
            repository: repository.to_string(),
            reference: reference.to_string(),
        })
    }

    /// The host the API is served on (Docker Hub's differs from its name).
    pub fn host(&self) -> &str {
        if self.registry == "docker.io" {
            "registry-1.docker.io"
        } else {
            &self.registry
        }
    }
}

/// The user and password for `registry` in a `.dockerconfigjson` document
/// (`auths.<registry>.auth` as base64 `user:password`, or `username`/`password`).
pub fn credentials_for(config: &Value, registry: &str) -> Option<(String, String)> {
    let auths = config.get("auths")?.as_object()?;
    let entry = auths.iter().find_map(|(key, value)| {
        let key = key
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        let key = key.split('/').next().unwrap_or(key);
        let same = key == registry
            || (registry == "docker.io"
                && matches!(key, "index.docker.io" | "registry-1.docker.io"));
        same.then_some(value)
    })?;
    if let Some(auth) = entry.get("auth").and_then(Value::as_str) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, password) = text.split_once(':')?;
        return Some((user.to_string(), password.to_string()));
    }
    Some((
        entry.get("username")?.as_str()?.to_string(),
        entry.get("password")?.as_str()?.to_string(),
    ))
}

/// What a registry's `WWW-Authenticate` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` header.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let (scheme, params) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut realm = None;
    let mut service = None;
    let mut scope = None;
    // key="value" pairs; values may hold commas (scopes do).
    let mut rest = params;
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().trim_start_matches(',').trim();
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find('"').unwrap_or(quoted.len());
                (&quoted[..end], quoted.get(end + 1..).unwrap_or(""))
            }
            None => {
                let end = after.find(',').unwrap_or(after.len());
                (&after[..end], &after[end..])
            }
        };
        match key {
            "realm" => realm = Some(value.to_string()),
            "service" => service = Some(value.to_string()),
            "scope" => scope = Some(value.to_string()),
            _ => {}
        }
        rest = next;
    }
    Some(Challenge::Bearer {
        realm: realm?,
        service,
        scope,
    })
}

fn sha256(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    format!(
        "sha256:{}",
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

/// One HTTP/1.1 GET over a new connection (plain HTTP), following redirects.
async fn get(
    url: &str,
    headers: &[(header::HeaderName, String)],
) -> Result<(StatusCode, header::HeaderMap, Bytes), PullError> {
    let fail = |url: &str, reason: String| PullError::Request {
        url: url.to_string(),
        reason,
    };
    let mut url = url.to_string();
    for _ in 0..5 {
        let uri: hyper::Uri = url.parse().map_err(|e| fail(&url, format!("{e}")))?;
        if uri.scheme_str() != Some("http") {
            return Err(fail(&url, "only plain HTTP is supported".into()));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| fail(&url, "no host".into()))?
            .clone();
        let port = authority.port_u16().unwrap_or(80);
        let attempt = async {
            let stream = tokio::net::TcpStream::connect((authority.host(), port))
                .await
                .map_err(|e| fail(&url, e.to_string()))?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .map_err(|e| fail(&url, e.to_string()))?;
            tokio::spawn(connection);
            let mut request = Request::get(uri.clone()).header(header::HOST, authority.as_str());
            for (name, value) in headers {
                request = request.header(name, value);
            }
            let request = request
                .body(Empty::<Bytes>::new())
                .map_err(|e| fail(&url, e.to_string()))?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| fail(&url, e.to_string()))?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| fail(&url, e.to_string()))?
                .to_bytes();
            Ok::<_, PullError>((parts.status, parts.headers, body))
        };
        let (status, headers_in, body) = tokio::time::timeout(REQUEST_TIMEOUT, attempt)
            .await
            .map_err(|_| fail(&url, format!("no answer within {REQUEST_TIMEOUT:?}")))??;
        if status.is_redirection()
            && let Some(location) = headers_in
                .get(header::LOCATION)
                .and_then(|l| l.to_str().ok())
        {
            url = if location.starts_with("http") {
                location.to_string()
            } else {
                format!("http://{authority}{location}")
            };
            continue;
        }
        return Ok((status, headers_in, body));
    }
    Err(fail(&url, "too many redirects".into()))
}

/// A session with one registry for one repository: remembers the token it got.
#[derive(Debug)]
pub struct Session {
    base: String,
    image: RegistryRef,
    credentials: Option<(String, String)>,
    authorization: Option<String>,
}

impl Session {
    /// A session for `image`, if its registry may be reached (`plain_http` lists the
    /// registries spoken to over plain HTTP).
    ///
    /// # Errors
    /// [`PullError::NoTransport`] for a registry not listed.
    pub fn new(
        image: RegistryRef,
        plain_http: &[String],
        credentials: Option<(String, String)>,
    ) -> Result<Self, PullError> {
        if !plain_http.contains(&image.registry) {
            return Err(PullError::NoTransport {
                registry: image.registry.clone(),
            });
        }
        Ok(Self {
            base: format!("http://{}/v2/{}", image.host(), image.repository),
            image,
            credentials,
            authorization: None,
        })
    }

    fn basic(&self) -> Option<String> {
        self.credentials.as_ref().map(|(user, password)| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            )
        })
    }

    /// Answers a 401's challenge: Basic with the credentials, or a token from the realm.
    async fn authenticate(&mut self, challenge: &str, url: &str) -> Result<(), PullError> {
        match parse_challenge(challenge) {
            Some(Challenge::Basic) => {
                self.authorization = self.basic();
            }
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => {
                let scope =
                    scope.unwrap_or_else(|| format!("repository:{}:pull", self.image.repository));
                let mut token_url = format!("{realm}?scope={scope}");
                if let Some(service) = service {
                    token_url.push_str(&format!("&service={service}"));
                }
                let headers: Vec<_> = self
                    .basic()
                    .map(|b| (header::AUTHORIZATION, b))
                    .into_iter()
                    .collect();
                let (status, _, body) = get(&token_url, &headers).await?;
                if !status.is_success() {
                    return Err(PullError::Status {
                        url: token_url,
                        status: status.as_u16(),
                        hint: " (getting a token: are the pull secret's credentials right?)".into(),
                    });
                }
                let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let token = answer["token"]
                    .as_str()
                    .or(answer["access_token"].as_str())
                    .unwrap_or_default();
                self.authorization = Some(format!("Bearer {token}"));
            }
            None => {
                return Err(PullError::Status {
                    url: url.to_string(),
                    status: 401,
                    hint: format!(" (an authentication scheme Skiff does not speak: {challenge})"),
                });
            }
        }
        Ok(())
    }

    /// GETs `path` under the repository, authenticating once if asked to.
    async fn fetch(
        &mut self,
        path: &str,
        accept: Option<&str>,
    ) -> Result<(header::HeaderMap, Bytes), PullError> {
        let url = format!("{}/{path}", self.base);
        for attempt in 0..2 {
            let mut headers = Vec::new();
            if let Some(accept) = accept {
                headers.push((header::ACCEPT, accept.to_string()));
            }
            if let Some(authorization) = &self.authorization {
                headers.push((header::AUTHORIZATION, authorization.clone()));
            }
            let (status, response_headers, body) = get(&url, &headers).await?;
            if status == StatusCode::UNAUTHORIZED && attempt == 0 {
                let challenge = response_headers
                    .get(header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("Basic")
                    .to_string();
                self.authenticate(&challenge, &url).await?;
                continue;
            }
            if !status.is_success() {
                let hint = match status {
                    StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                        " (unauthorized: give the pod an imagePullSecret of type kubernetes.io/dockerconfigjson for this registry)"
                    }
                    StatusCode::NOT_FOUND => " (not found: check the image name and tag)",
                    _ => "",
                };
                return Err(PullError::Status {
                    url,
                    status: status.as_u16(),
                    hint: hint.into(),
                });
            }
            return Ok((response_headers, body));
        }
        unreachable!("the loop returns on its second pass")
    }

    /// A blob, checked against its digest.
    pub async fn blob(&mut self, digest: &str) -> Result<Bytes, PullError> {
        let (_, body) = self.fetch(&format!("blobs/{digest}"), None).await?;
        if sha256(&body) != digest {
            return Err(PullError::Digest {
                what: "a blob".into(),
                url: format!("{}/blobs/{digest}", self.base),
                digest: digest.into(),
            });
        }
        Ok(body)
    }

    /// The manifest (or index) `reference` names: its media type, digest and bytes.
    pub async fn manifest(
        &mut self,
        reference: &str,
    ) -> Result<(String, String, Bytes), PullError> {
        let (headers, body) = self
            .fetch(&format!("manifests/{reference}"), Some(ACCEPT))
            .await?;
        let digest = sha256(&body);
        if reference.starts_with("sha256:") && digest != reference {
            return Err(PullError::Digest {
                what: "the manifest".into(),
                url: format!("{}/manifests/{reference}", self.base),
                digest: reference.into(),
            });
        }
        let document: Value = serde_json::from_slice(&body).map_err(|e| PullError::Manifest {
            image: format!("{}/{}", self.image.registry, self.image.repository),
            reason: e.to_string(),
        })?;
        let media_type = document["mediaType"]
            .as_str()
            .map(str::to_string)
            .or_else(|| {
                headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".into());
        Ok((media_type, digest, body))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn references_split_into_registry_repository_and_tag_or_digest() {
        let r = RegistryRef::parse("10.0.0.1:5000/team/app:1.2").unwrap();
        assert_eq!(
            (
                r.registry.as_str(),
                r.repository.as_str(),
                r.reference.as_str()
            ),
            ("10.0.0.1:5000", "team/app", "1.2")
        );
        let d = RegistryRef::parse("docker.io/library/busybox@sha256:abc").unwrap();
        assert_eq!(d.reference, "sha256:abc");
        assert_eq!(d.host(), "registry-1.docker.io");
    }

    #[test]
    fn pull_secrets_give_credentials_for_their_registry_only() {
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        let config = json!({"auths": {
            "10.0.0.1:5000": {"auth": auth},
            "https://index.docker.io/v1/": {"username": "bob", "password": "pw"},
        }});
        assert_eq!(
            credentials_for(&config, "10.0.0.1:5000"),
            Some(("alice".into(), "s3cret".into()))
        );
        assert_eq!(
            credentials_for(&config, "docker.io"),
            Some(("bob".into(), "pw".into()))
        );
        assert_eq!(credentials_for(&config, "other:5000"), None);
    }

    #[test]
    fn challenges_are_parsed_with_their_realm_service_and_scope() {
        assert_eq!(
            parse_challenge("Basic realm=\"registry\""),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge(
                "Bearer realm=\"http://auth.local/token\",service=\"registry\",scope=\"repository:a/b:pull,push\""
            ),
            Some(Challenge::Bearer {
                realm: "http://auth.local/token".into(),
                service: Some("registry".into()),
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
        assert_eq!(parse_challenge("Negotiate abc"), None);
    }

    #[test]
    fn an_unlisted_registry_is_refused_with_a_reason() {
        let image = RegistryRef::parse("example.com/app:1").unwrap();
        let error = Session::new(image, &["127.0.0.1:5000".into()], None).unwrap_err();
        assert!(
            error.to_string().contains("--plain-http-registry"),
            "{error}"
        );
    }
}
