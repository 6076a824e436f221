//! The control plane's PKI: a CA and a serving certificate made with rcgen at first start
//! and kept in the data directory, so clients pin one CA across restarts.

use std::{fs, net::IpAddr, path::Path};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};

/// PEM files the server serves with and clients trust.
#[derive(Debug, Clone)]
pub struct Pki {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// Why the PKI could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading or writing {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("generating certificates")]
    Generate(#[from] rcgen::Error),
}

/// Loads the CA from `dir` (making it on first start) and issues a serving certificate for
/// `localhost`, `127.0.0.1` and every address in `addresses`.
///
/// The serving certificate is reissued at every start so that new addresses are covered;
/// the CA stays the same.
///
/// # Errors
/// On I/O errors in `dir` or a generation failure.
pub fn load_or_create(dir: &Path, addresses: &[IpAddr]) -> Result<Pki, TlsError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| TlsError::Io { path, source }
    };
    fs::create_dir_all(dir).map_err(io(dir))?;
    let ca_cert_path = dir.join("ca.crt");
    let ca_key_path = dir.join("ca.key");
    let (ca_pem, ca_key) = if ca_cert_path.exists() && ca_key_path.exists() {
        let pem = fs::read_to_string(&ca_cert_path).map_err(io(&ca_cert_path))?;
        let key = KeyPair::from_pem(&fs::read_to_string(&ca_key_path).map_err(io(&ca_key_path))?)?;
        (pem, key)
    } else {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "skiff-ca");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key)?;
        write_private(&ca_key_path, &key.serialize_pem()).map_err(io(&ca_key_path))?;
        fs::write(&ca_cert_path, cert.pem()).map_err(io(&ca_cert_path))?;
        (cert.pem(), key)
    };
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key)?;

    let key = KeyPair::generate()?;
    let mut params =
        CertificateParams::new(vec!["localhost".to_string(), "skiff-control".to_string()])?;
    params
        .distinguished_name
        .push(DnType::CommonName, "skiff-control");
    params
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::from([127, 0, 0, 1])));
    for address in addresses {
        params.subject_alt_names.push(SanType::IpAddress(*address));
    }
    let cert = params.signed_by(&key, &issuer)?;
    let cert_path = dir.join("server.crt");
    let key_path = dir.join("server.key");
    fs::write(&cert_path, cert.pem()).map_err(io(&cert_path))?;
    write_private(&key_path, &key.serialize_pem()).map_err(io(&key_path))?;
    Ok(Pki {
        ca_pem,
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Writes a file readable by its owner only.
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)?;
    std::io::Write::write_all(&mut file, contents.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_is_made_once_and_kept_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path(), &[]).unwrap();
        let second = load_or_create(dir.path(), &["10.250.0.1".parse().unwrap()]).unwrap();
        assert_eq!(first.ca_pem, second.ca_pem);
        assert_ne!(first.cert_pem, second.cert_pem);
    }
}
