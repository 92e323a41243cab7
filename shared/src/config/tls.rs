//! `tls_server` and `tls_client` values, built into rustls configs at load time so that a
//! certificate or key that does not parse, a key that does not match its certificate, or a
//! setting rustls cannot honour is a load error at its file, YAML path and line, and so that
//! workers use exactly what was validated (the PEM text travels in the config snapshot).
//!
//! One crypto provider for the whole workspace: `ring`. It builds with a C compiler alone
//! (aws-lc-rs needs cmake and takes several times longer on two cores) and its ECDSA and
//! X25519 are what our handshakes use.
//!
//! PEM paths are relative to the directory of the config file that names them. The loader
//! reads every such file through its source before decoding ([`read_pem_files`]), so the
//! files land in the snapshot and decoding itself never touches the disk.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::Deserialize;
use serde::de::{self, Deserializer};

use super::source::Source;
use super::yaml::{Node, Value, normalize_key};
use crate::types::HumanDuration;

/// Keys whose values are PEM file paths, wherever they appear.
const PEM_KEYS: [&str; 5] = [
    "certificate",
    "private_key",
    "ca_certificate",
    "client_auth_certificate",
    "server_auth_certificate",
];

thread_local! {
    /// The PEM files of the load in progress, by absolute path, read before decoding.
    static PEM_FILES: RefCell<HashMap<PathBuf, Result<String, String>>> = RefCell::new(HashMap::new());
}

/// Rewrites every PEM path in `node` to an absolute one (relative to the directory of the file
/// it was written in) and reads it through `source`, for [`PemText`] to find while decoding.
pub(crate) fn read_pem_files(node: &mut Node, base_dir: &Path, source: &mut dyn Source) {
    fn walk(node: &mut Node, under_pem_key: bool, base_dir: &Path, source: &mut dyn Source) {
        let file_dir = base_dir
            .join(&*node.file)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| base_dir.to_path_buf());
        match &mut node.value {
            Value::Scalar { text, .. } if under_pem_key => {
                let path = file_dir.join(text.as_str());
                let content = source.read(&path);
                *text = path.display().to_string();
                PEM_FILES.with(|files| files.borrow_mut().insert(path, content));
            }
            Value::Seq(items) => {
                for item in items {
                    walk(item, under_pem_key, base_dir, source);
                }
            }
            Value::Map(entries) => {
                for (key, value) in entries {
                    let pem = key
                        .as_str()
                        .is_some_and(|k| PEM_KEYS.contains(&normalize_key(k).as_str()));
                    walk(value, pem, base_dir, source);
                }
            }
            _ => {}
        }
    }
    walk(node, false, base_dir, source);
}

/// Forgets the PEM files of a finished load.
pub(crate) fn forget_pem_files() {
    PEM_FILES.with(|files| files.borrow_mut().clear());
}

/// The text of a PEM file named in the config, with its path for messages.
#[derive(Clone, PartialEq, Eq)]
pub struct PemText {
    pub path: PathBuf,
    pub text: String,
}

/// The path only: the text may be a private key.
impl std::fmt::Debug for PemText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PemText({})", self.path.display())
    }
}

impl<'de> Deserialize<'de> for PemText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let path = PathBuf::from(String::deserialize(deserializer)?);
        let found = PEM_FILES.with(|files| files.borrow().get(&path).cloned());
        match found {
            Some(Ok(text)) => Ok(PemText { path, text }),
            Some(Err(error)) => Err(de::Error::custom(error)),
            None => Err(de::Error::custom(format!(
                "{} was not read with the config",
                path.display()
            ))),
        }
    }
}

/// One PEM file or a list of them, whatever decodes the config (our YAML reader takes a
/// scalar for a list; the log section's JSON values do not).
fn pem_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<PemText>, D::Error> {
    struct ListVisitor;
    impl<'de> de::Visitor<'de> for ListVisitor {
        type Value = Vec<PemText>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a PEM file or a list of them")
        }
        fn visit_str<E: de::Error>(self, path: &str) -> Result<Vec<PemText>, E> {
            PemText::deserialize(de::value::StrDeserializer::<E>::new(path)).map(|pem| vec![pem])
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<PemText>, A::Error> {
            let mut all = Vec::new();
            while let Some(pem) = seq.next_element()? {
                all.push(pem);
            }
            Ok(all)
        }
    }
    deserializer.deserialize_any(ListVisitor)
}

impl PemText {
    fn certificates(&self) -> Result<Vec<CertificateDer<'static>>, String> {
        let certs = CertificateDer::pem_slice_iter(self.text.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{}: invalid certificate PEM: {e}", self.path.display()))?;
        if certs.is_empty() {
            return Err(format!("{}: no certificate in it", self.path.display()));
        }
        Ok(certs)
    }

    fn private_key(&self) -> Result<PrivateKeyDer<'static>, String> {
        PrivateKeyDer::from_pem_slice(self.text.as_bytes())
            .map_err(|e| format!("{}: invalid private key PEM: {e}", self.path.display()))
    }
}

/// A list of CA files, or one.
fn ca_store(files: &[PemText]) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    for file in files {
        for cert in file.certificates()? {
            store
                .add(cert)
                .map_err(|e| format!("{}: unusable CA certificate: {e}", file.path.display()))?;
        }
    }
    Ok(store)
}

pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct CertPair {
    certificate: PemText,
    private_key: PemText,
}

impl CertPair {
    fn certified_key(&self, provider: &CryptoProvider) -> Result<CertifiedKey, String> {
        let certs = self.certificate.certificates()?;
        let key = self.private_key()?;
        let signing = provider.key_provider.load_private_key(key).map_err(|e| {
            format!(
                "{}: unusable private key: {e}",
                self.private_key.path.display()
            )
        })?;
        let certified = CertifiedKey::new(certs, signing);
        certified.keys_match().map_err(|e| {
            format!(
                "{} does not match {}: {e}",
                self.private_key.path.display(),
                self.certificate.path.display()
            )
        })?;
        Ok(certified)
    }

    fn private_key(&self) -> Result<PrivateKeyDer<'static>, String> {
        self.private_key.private_key()
    }
}

fn default_handshake_timeout() -> HumanDuration {
    HumanDuration::secs(10)
}

/// TLS versions by g3's names; rustls has 1.2 and 1.3 only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

impl<'de> Deserialize<'de> for TlsVersion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        match normalize_key(&text).replace(['.', '_', 'v'], "").as_str() {
            "tls12" | "12" => Ok(TlsVersion::Tls12),
            "tls13" | "13" => Ok(TlsVersion::Tls13),
            "tls10" | "tls11" | "10" | "11" => Err(de::Error::custom(format!(
                "{text} is not offered by this build (rustls speaks TLS 1.2 and 1.3)"
            ))),
            "tlcp" | "tlcp11" => Err(de::Error::custom("this build is built without TLCP")),
            _ => Err(de::Error::custom(format!("unknown TLS version {text:?}"))),
        }
    }
}

fn protocol_versions(
    min: Option<TlsVersion>,
    max: Option<TlsVersion>,
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, String> {
    let (min, max) = (
        min.unwrap_or(TlsVersion::Tls12),
        max.unwrap_or(TlsVersion::Tls13),
    );
    if min > max {
        return Err("min_tls_version is above max_tls_version".into());
    }
    Ok([
        (TlsVersion::Tls12, &rustls::version::TLS12),
        (TlsVersion::Tls13, &rustls::version::TLS13),
    ]
    .into_iter()
    .filter(|(v, _)| (min..=max).contains(v))
    .map(|(_, version)| version)
    .collect())
}

/// The keys of g3's rustls server config, plus versions and ALPN.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsServerKeys {
    #[serde(default)]
    cert_pairs: Vec<CertPair>,
    #[serde(default)]
    certificate: Option<PemText>,
    #[serde(default)]
    private_key: Option<PemText>,
    #[serde(default)]
    enable_client_auth: bool,
    #[serde(
        default,
        alias = "client_auth_certificate",
        deserialize_with = "pem_list"
    )]
    ca_certificate: Vec<PemText>,
    #[serde(default)]
    no_session_ticket: bool,
    #[serde(default)]
    no_session_cache: bool,
    #[serde(
        default = "default_handshake_timeout",
        deserialize_with = "crate::types::bounds::timeout",
        alias = "accept_timeout"
    )]
    handshake_timeout: HumanDuration,
    #[serde(default)]
    min_tls_version: Option<TlsVersion>,
    #[serde(default)]
    max_tls_version: Option<TlsVersion>,
    /// ALPN protocols offered, in preference order (`http/1.1` by default for proxies).
    #[serde(default)]
    alpn_protocols: Vec<String>,
    /// OpenSSL-only keys of `native_tls_port`: TLCP is refused, the session context ignored.
    #[serde(default)]
    tlcp_cert_pairs: Option<serde_json_free::Anything>,
    #[serde(default)]
    session_id_context: Option<String>,
}

/// A server-side TLS config: what the operator wrote, and the rustls config built from it.
#[derive(Clone)]
pub struct TlsServerConfig {
    keys: TlsServerKeys,
    pub handshake_timeout: Duration,
    pub rustls: Arc<rustls::ServerConfig>,
}

/// A built config shows and compares as the keys it was built from (rustls configs have no
/// equality, and their debug form is noise).
macro_rules! by_keys {
    ($($config:ty),*) => {$(
        impl fmt::Debug for $config {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.keys.fmt(f)
            }
        }

        impl PartialEq for $config {
            fn eq(&self, other: &Self) -> bool {
                self.keys == other.keys
            }
        }
    )*};
}

by_keys!(TlsServerConfig, TlsClientConfig);

impl<'de> Deserialize<'de> for TlsServerConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let keys = TlsServerKeys::deserialize(deserializer)?;
        let rustls = keys.build().map_err(de::Error::custom)?;
        Ok(TlsServerConfig {
            handshake_timeout: keys.handshake_timeout.0,
            keys,
            rustls: Arc::new(rustls),
        })
    }
}

/// Chooses the certificate whose names match the client's SNI; the first one otherwise.
#[derive(Debug)]
struct CertsBySni {
    certs: Vec<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for CertsBySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let by_name = hello.server_name().and_then(|sni| {
            let name = ServerName::try_from(sni).ok()?;
            self.certs.iter().find(|key| {
                key.end_entity_cert().ok().is_some_and(|cert| {
                    webpki::EndEntityCert::try_from(cert)
                        .is_ok_and(|cert| cert.verify_is_valid_for_subject_name(&name).is_ok())
                })
            })
        });
        by_name.or_else(|| self.certs.first()).cloned()
    }
}

impl TlsServerKeys {
    fn build(&self) -> Result<rustls::ServerConfig, String> {
        if self.tlcp_cert_pairs.is_some() {
            return Err("tlcp_cert_pairs: this build is built without TLCP".into());
        }
        let provider = crypto_provider();
        let mut pairs = self.cert_pairs.clone();
        match (&self.certificate, &self.private_key) {
            (Some(certificate), Some(private_key)) => pairs.push(CertPair {
                certificate: certificate.clone(),
                private_key: private_key.clone(),
            }),
            (None, None) => {}
            _ => return Err("certificate and private_key go together".into()),
        }
        if pairs.is_empty() {
            return Err("no certificate: set cert_pairs, or certificate and private_key".into());
        }
        let certs = pairs
            .iter()
            .map(|pair| pair.certified_key(&provider).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&protocol_versions(
                self.min_tls_version,
                self.max_tls_version,
            )?)
            .map_err(|e| e.to_string())?;
        let builder = if self.enable_client_auth {
            // Without ca_certificate, client certificates are checked against the system's
            // CA certificates, as g3proxy does.
            let mut roots = ca_store(&self.ca_certificate)?;
            if self.ca_certificate.is_empty() {
                system_roots(&mut roots);
                if roots.is_empty() {
                    return Err(
                        "enable_client_auth without ca_certificate, and the system has no CA certificates"
                            .into(),
                    );
                }
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("client certificate verifier: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder.with_cert_resolver(Arc::new(CertsBySni { certs }));
        config.alpn_protocols = self
            .alpn_protocols
            .iter()
            .map(|p| p.as_bytes().to_vec())
            .collect();
        if self.no_session_cache {
            config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        }
        if self.no_session_ticket {
            config.send_tls13_tickets = 0;
        }
        Ok(config)
    }
}

/// The keys of g3's tls client configs (rustls and openssl forms). Those rustls cannot honour
/// are refused at load rather than silently ignored.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsClientKeys {
    #[serde(
        default,
        alias = "server_auth_certificate",
        deserialize_with = "pem_list"
    )]
    ca_certificate: Vec<PemText>,
    #[serde(default)]
    no_default_ca_certificate: bool,
    #[serde(default)]
    use_builtin_ca_certificate: bool,
    #[serde(default, alias = "cert_pair")]
    cert_pair: Option<CertPair>,
    #[serde(default)]
    certificate: Option<PemText>,
    #[serde(default)]
    private_key: Option<PemText>,
    #[serde(
        default = "default_handshake_timeout",
        deserialize_with = "crate::types::bounds::timeout"
    )]
    handshake_timeout: HumanDuration,
    #[serde(default)]
    disable_sni: bool,
    #[serde(default)]
    no_session_cache: bool,
    #[serde(default)]
    use_builtin_session_cache: bool,
    #[serde(default)]
    session_cache_lru_max_sites: Option<usize>,
    #[serde(default)]
    session_cache_each_capacity: Option<usize>,
    #[serde(default)]
    max_fragment_size: Option<usize>,
    #[serde(default)]
    protocol: Option<TlsVersion>,
    #[serde(default)]
    min_tls_version: Option<TlsVersion>,
    #[serde(default)]
    max_tls_version: Option<TlsVersion>,
    #[serde(default)]
    alpn_protocols: Vec<String>,
    /// Accept any server certificate. For tests and broken peers only.
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    ciphers: Option<serde_json_free::Anything>,
    #[serde(default)]
    supported_groups: Option<serde_json_free::Anything>,
    #[serde(default)]
    use_ocsp_stapling: Option<bool>,
    #[serde(default)]
    enable_sct: Option<bool>,
    #[serde(default)]
    enable_grease: Option<bool>,
    #[serde(default)]
    permute_extensions: Option<bool>,
    #[serde(default)]
    tlcp_cert_pair: Option<serde_json_free::Anything>,
}

/// Values of keys we only refuse, whatever their shape.
mod serde_json_free {
    use serde::Deserialize;
    use serde::de::{Deserializer, IgnoredAny};

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Anything;

    impl<'de> Deserialize<'de> for Anything {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            IgnoredAny::deserialize(deserializer).map(|_| Anything)
        }
    }
}

/// A client-side TLS config: what the operator wrote, and the rustls config built from it.
#[derive(Clone)]
pub struct TlsClientConfig {
    keys: TlsClientKeys,
    pub handshake_timeout: Duration,
    pub rustls: Arc<rustls::ClientConfig>,
}

impl TlsClientConfig {
    /// `tls_client: {}` or `true`: the system's CA certificates, no client certificate.
    pub fn defaults() -> Result<Self, String> {
        Self::from_keys(TlsClientKeys {
            handshake_timeout: default_handshake_timeout(),
            ..Default::default()
        })
    }

    fn from_keys(keys: TlsClientKeys) -> Result<Self, String> {
        let rustls = keys.build()?;
        Ok(TlsClientConfig {
            handshake_timeout: keys.handshake_timeout.0,
            keys,
            rustls: Arc::new(rustls),
        })
    }
}

impl<'de> Deserialize<'de> for TlsClientConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let keys = TlsClientKeys::deserialize(deserializer)?;
        TlsClientConfig::from_keys(keys).map_err(de::Error::custom)
    }
}

/// `tls_client` may be a map, or `true`/`false` as g3 allows for some modules.
#[derive(Debug, Clone, PartialEq)]
pub struct OptionalTlsClient(pub Option<TlsClientConfig>);

impl<'de> Deserialize<'de> for OptionalTlsClient {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FormVisitor;
        impl<'de> de::Visitor<'de> for FormVisitor {
            type Value = OptionalTlsClient;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a tls client map, or true / false")
            }
            fn visit_bool<E: de::Error>(self, on: bool) -> Result<Self::Value, E> {
                if !on {
                    return Ok(OptionalTlsClient(None));
                }
                TlsClientConfig::defaults()
                    .map(|c| OptionalTlsClient(Some(c)))
                    .map_err(E::custom)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                self.visit_bool(true)
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                TlsClientConfig::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|c| OptionalTlsClient(Some(c)))
            }
        }
        deserializer.deserialize_any(FormVisitor)
    }
}

/// The system's CA certificates, read once per config build.
fn system_roots(store: &mut RootCertStore) {
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        let _ = store.add(cert);
    }
}

#[derive(Debug)]
struct AcceptAnything(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl TlsClientKeys {
    fn build(&self) -> Result<rustls::ClientConfig, String> {
        let cannot = |key: &str| {
            Err(format!(
                "{key} is not supported by this build's TLS (rustls)"
            ))
        };
        if self.ciphers.is_some() {
            return cannot("ciphers");
        }
        if self.supported_groups.is_some() {
            return cannot("supported_groups");
        }
        if self.use_ocsp_stapling == Some(true) {
            return cannot("use_ocsp_stapling");
        }
        if self.enable_sct == Some(true) {
            return cannot("enable_sct");
        }
        if self.enable_grease == Some(true) {
            return cannot("enable_grease");
        }
        if self.permute_extensions == Some(true) {
            return cannot("permute_extensions");
        }
        if self.tlcp_cert_pair.is_some() {
            return Err("tlcp_cert_pair: this build is built without TLCP".into());
        }
        if let Some(size) = self.max_fragment_size
            && !(32..=16389).contains(&size)
        {
            return Err(format!(
                "max_fragment_size {size} is out of range: allowed is 32 to 16389"
            ));
        }
        let provider = crypto_provider();
        let (min, max) = match self.protocol {
            Some(version) => (Some(version), Some(version)),
            None => (self.min_tls_version, self.max_tls_version),
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&protocol_versions(min, max)?)
            .map_err(|e| e.to_string())?;
        let builder = if self.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnything(provider.clone())))
        } else {
            let mut roots = ca_store(&self.ca_certificate)?;
            if !self.no_default_ca_certificate || self.use_builtin_ca_certificate {
                system_roots(&mut roots);
            }
            builder.with_root_certificates(roots)
        };
        let pair = match (&self.cert_pair, &self.certificate, &self.private_key) {
            (Some(pair), None, None) => Some(pair.clone()),
            (None, Some(certificate), Some(private_key)) => Some(CertPair {
                certificate: certificate.clone(),
                private_key: private_key.clone(),
            }),
            (None, None, None) => None,
            _ => {
                return Err(
                    "a client certificate is cert_pair, or certificate and private_key".into(),
                );
            }
        };
        let mut config = match pair {
            Some(pair) => {
                pair.certified_key(&provider)?;
                builder
                    .with_client_auth_cert(pair.certificate.certificates()?, pair.private_key()?)
                    .map_err(|e| e.to_string())?
            }
            None => builder.with_no_client_auth(),
        };
        config.enable_sni = !self.disable_sni;
        config.max_fragment_size = self.max_fragment_size;
        config.alpn_protocols = self
            .alpn_protocols
            .iter()
            .map(|p| p.as_bytes().to_vec())
            .collect();
        if self.no_session_cache {
            config.resumption = rustls::client::Resumption::disabled();
        } else if let Some(sites) = self.session_cache_lru_max_sites {
            let each = self.session_cache_each_capacity.unwrap_or(16);
            config.resumption = rustls::client::Resumption::in_memory_sessions(
                sites.saturating_mul(each).clamp(1, 1 << 20),
            );
        }
        Ok(config)
    }
}
