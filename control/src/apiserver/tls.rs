//! The control plane's PKI: a CA and a serving certificate made with rcgen at first start
//! and kept in the data directory, so clients pin one CA across restarts; the API server's
//! client certificate for node APIs, and the signing of nodes' serving certificates.

use std::{fs, net::IpAddr, path::Path};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};

pub use skiff_api::node_api::API_SERVER_CLIENT_NAME as NODE_API_CLIENT_NAME;

/// PEM files the server serves with and clients trust.
#[derive(Clone)]
pub struct Pki {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    /// The API server's client certificate and key for calls to node APIs.
    pub node_client_cert_pem: String,
    pub node_client_key_pem: String,
    ca_key_pem: String,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").finish_non_exhaustive()
    }
}

impl Pki {
    /// Signs `csr_pem` as the serving certificate of node `node`: whatever the request
    /// asks for, the certificate names only `node` (as a DNS name and in its common name
    /// `system:node:<node>`) and is good for server authentication only.
    ///
    /// # Errors
    /// When the request is not a valid, self-signed CSR.
    pub fn sign_node_serving(&self, node: &str, csr_pem: &str) -> Result<String, TlsError> {
        let mut csr = CertificateSigningRequestParams::from_pem(csr_pem)?;
        let mut params = CertificateParams::new(vec![node.to_string()])?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("system:node:{node}"));
        params
            .distinguished_name
            .push(DnType::OrganizationName, "system:nodes");
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        csr.params = params;
        let issuer = Issuer::from_ca_cert_pem(&self.ca_pem, KeyPair::from_pem(&self.ca_key_pem)?)?;
        Ok(csr.signed_by(&issuer)?.pem())
    }
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
    let ca_key_pem = ca_key.serialize_pem();
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
    // The client certificate towards nodes lives in memory only: it is made anew at
    // every start.
    let client_key = KeyPair::generate()?;
    let mut client = CertificateParams::new(Vec::<String>::new())?;
    client
        .distinguished_name
        .push(DnType::CommonName, NODE_API_CLIENT_NAME);
    client
        .distinguished_name
        .push(DnType::OrganizationName, "system:masters");
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = client.signed_by(&client_key, &issuer)?;
    Ok(Pki {
        ca_pem,
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        node_client_cert_pem: client_cert.pem(),
        node_client_key_pem: client_key.serialize_pem(),
        ca_key_pem,
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

    #[test]
    fn a_node_serving_certificate_names_only_the_node_whatever_the_request_asks() {
        let dir = tempfile::tempdir().unwrap();
        let pki = load_or_create(dir.path(), &[]).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut asked =
            CertificateParams::new(vec!["node-1".into(), "skiff-control".into()]).unwrap();
        asked.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let csr = asked.serialize_request(&key).unwrap().pem().unwrap();
        let pem = pki.sign_node_serving("node-1", &csr).unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        let signed = pem.parse_x509().unwrap();
        let names: Vec<String> = signed
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(names, ["DNSName(node-1)"]);
        assert!(!signed.is_ca());
        assert_eq!(
            signed
                .subject()
                .iter_common_name()
                .next()
                .unwrap()
                .as_str()
                .unwrap(),
            "system:node:node-1"
        );
        assert!(pki.sign_node_serving("node-1", "not a csr").is_err());
    }
}
