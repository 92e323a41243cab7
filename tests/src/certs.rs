//! Certificates made for one test with the `openssl` command: a CA, a server certificate for
//! `localhost`, 127.0.0.1 and ::1, and a client certificate, all signed by that CA (P-256).

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Certs {
    pub dir: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A new P-256 key, unencrypted.
const EC_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
];

impl Certs {
    /// Writes `ca.pem`, `server.pem`/`server.key` and `client.pem`/`client.key` into `dir`.
    pub fn make(dir: &Path) -> Certs {
        std::fs::create_dir_all(dir).expect("cert dir");
        let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=g3proxy test CA"];
        ca.extend(EC_KEY);
        ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
        ca.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
        ca.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
        openssl(dir, &ca);
        for (name, extensions) in [
            (
                "server",
                "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
            ),
            (
                "client",
                "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n",
            ),
        ] {
            sign(dir, name, extensions);
        }
        Certs {
            dir: dir.to_path_buf(),
        }
    }

    /// Writes `NAME.pem`/`NAME.key`: a server certificate for the DNS name `host`, signed
    /// by the test CA.
    pub fn make_server(&self, name: &str, host: &str) {
        let extensions = format!(
            "subjectAltName=DNS:{host}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"
        );
        sign(&self.dir, name, &extensions);
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Copies the certificates and keys into `dir` (a group's directory, where its config
    /// refers to them), for tests that start a TLS origin before the group exists.
    pub fn copy_into(&self, dir: &Path) {
        for name in [
            "ca.pem",
            "server.pem",
            "server.key",
            "client.pem",
            "client.key",
        ] {
            std::fs::copy(self.path(name), dir.join(name)).expect("copy certificate");
        }
    }

    /// A TLS client of `localhost` over `tcp`, trusting the test CA (a 20 s read timeout).
    pub fn tls_client(
        &self,
        tcp: std::net::TcpStream,
    ) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in
            rustls::pki_types::CertificateDer::pem_file_iter(self.path("ca.pem")).expect("ca.pem")
        {
            roots.add(cert.expect("ca certificate")).expect("add ca");
        }
        let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connection = rustls::ClientConnection::new(
            std::sync::Arc::new(config),
            "localhost".try_into().expect("server name"),
        )
        .expect("tls client");
        tcp.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .expect("read timeout");
        rustls::StreamOwned::new(connection, tcp)
    }

    /// A rustls server config with the server certificate, for test origins.
    pub fn server_config(&self) -> std::sync::Arc<rustls::ServerConfig> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs = CertificateDer::pem_file_iter(self.path("server.pem"))
            .expect("server.pem")
            .collect::<Result<Vec<_>, _>>()
            .expect("certificates");
        let key = PrivateKeyDer::from_pem_file(self.path("server.key")).expect("server.key");
        let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
        std::sync::Arc::new(config)
    }
}

/// A key and a certificate `NAME.pem` with `extensions`, signed by the CA in `dir`.
fn sign(dir: &Path, name: &str, extensions: &str) {
    let mut request = vec!["req", "-subj"];
    let subject = format!("/CN={name}");
    request.push(&subject);
    request.extend(EC_KEY);
    let key = format!("{name}.key");
    let csr = format!("{name}.csr");
    request.extend(["-keyout", &key, "-out", &csr]);
    openssl(dir, &request);
    let ext_file = format!("{name}.ext");
    std::fs::write(dir.join(&ext_file), extensions).expect("ext file");
    let pem = format!("{name}.pem");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext_file,
            "-out",
            &pem,
        ],
    );
}
