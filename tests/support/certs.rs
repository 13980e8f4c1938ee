//! Certificates for the test servers (SMTP, Mosquitto): a private CA with a leaf it signed,
//! or one self-signed certificate marked CA:TRUE as `openssl req -x509` makes it.

use std::net::IpAddr;
use std::sync::Arc;

pub struct TestCa {
    /// The CA certificate (for a self-signed one, the certificate itself), PEM: what a
    /// client is given as `ca_file`.
    pub ca_pem: String,
    ca_der: rustls::pki_types::CertificateDer<'static>,
    leaf_der: rustls::pki_types::CertificateDer<'static>,
    leaf_key_der: Vec<u8>,
    /// The leaf is the whole chain (self-signed).
    chain_of_one: bool,
}

impl TestCa {
    /// A CA and a leaf it signed for `localhost`, 127.0.0.1 and `ip`.
    pub fn generate(ip: IpAddr) -> TestCa {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose,
        };
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "snapmail test CA");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().expect("CA key");
        let ca_cert = ca.self_signed(&ca_key).expect("self-sign CA");
        let issuer = Issuer::new(ca, ca_key);

        let mut names = vec!["localhost".to_string(), "127.0.0.1".into()];
        if !ip.is_loopback() {
            names.push(ip.to_string());
        }
        let mut leaf = CertificateParams::new(names).expect("leaf params");
        leaf.distinguished_name
            .push(DnType::CommonName, "localhost");
        leaf.is_ca = IsCa::NoCa;
        leaf.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_key = KeyPair::generate().expect("leaf key");
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer).expect("sign leaf");

        TestCa {
            ca_pem: ca_cert.pem(),
            ca_der: ca_cert.der().clone(),
            leaf_der: leaf_cert.der().clone(),
            leaf_key_der: leaf_key.serialize_der(),
            chain_of_one: false,
        }
    }

    /// One certificate, CA:TRUE, issued by itself for `localhost` and the server's address.
    pub fn self_signed(ip: IpAddr) -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let mut names = vec!["localhost".to_string(), "127.0.0.1".into()];
        if !ip.is_loopback() {
            names.push(ip.to_string());
        }
        let mut params = CertificateParams::new(names).expect("self-signed params");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("self-sign");
        TestCa {
            ca_pem: cert.pem(),
            ca_der: cert.der().clone(),
            leaf_der: cert.der().clone(),
            leaf_key_der: key.serialize_der(),
            chain_of_one: true,
        }
    }

    /// A rustls server presenting the leaf (and the CA after it, unless self-signed).
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(self.leaf_key_der.clone().into());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(
                if self.chain_of_one {
                    vec![self.leaf_der.clone()]
                } else {
                    vec![self.leaf_der.clone(), self.ca_der.clone()]
                },
                key,
            )
            .expect("server certificate");
        Arc::new(config)
    }
}

impl TestCa {
    /// The certificate chain a server presents, PEM (leaf first).
    pub fn chain_pem(&self) -> String {
        let mut pem = pem_of("CERTIFICATE", &self.leaf_der);
        if !self.chain_of_one {
            pem.push_str(&self.ca_pem);
        }
        pem
    }

    /// The leaf's private key, PKCS#8 PEM.
    pub fn key_pem(&self) -> String {
        pem_of("PRIVATE KEY", &self.leaf_key_der)
    }
}

fn pem_of(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
