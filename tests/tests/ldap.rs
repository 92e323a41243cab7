//! Scenario: a user group of `type: ldap` against a real OpenLDAP server (Debian's slapd, run
//! by the test on loopback with a directory it fills). Listed users and, with
//! `unmanaged_user`, any name the directory knows log in with the directory's password; a
//! wrong or empty password, a name the directory lacks and a name that tries to reach
//! another entry are refused; an accepted password is remembered while the directory is down.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use g3proxy_tests::{Group, Origin, curl_status, free_port, wait_until};

const SUFFIX: &str = "dc=example,dc=test";

/// slapd on 127.0.0.1:`port` with a directory of people; stopped when dropped.
struct Slapd {
    child: Child,
    dir: PathBuf,
}

impl Slapd {
    fn start(port: u16) -> Slapd {
        let slapd = Path::new("/usr/sbin/slapd");
        assert!(
            slapd.exists(),
            "slapd is not installed (ci/setup.sh installs Debian's slapd)"
        );
        let dir = std::env::temp_dir().join(format!("g3proxy-slapd-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("db")).expect("slapd dir");
        let conf = format!(
            "include /etc/ldap/schema/core.schema\ninclude /etc/ldap/schema/cosine.schema\ninclude /etc/ldap/schema/inetorgperson.schema\npidfile {dir}/slapd.pid\nmodulepath /usr/lib/ldap\nmoduleload back_mdb\ndatabase mdb\nmaxsize 10485760\nsuffix \"{SUFFIX}\"\nrootdn \"cn=admin,{SUFFIX}\"\nrootpw admin-secret\ndirectory {dir}/db\n",
            dir = dir.display()
        );
        std::fs::write(dir.join("slapd.conf"), conf).expect("slapd.conf");
        let mut ldif = format!(
            "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: example\ndc: example\n\ndn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n"
        );
        for (uid, password) in [
            ("alice", "wonderland"),
            ("bob", "builder"),
            ("carol", "c-pass"),
        ] {
            ldif.push_str(&format!(
                "\ndn: uid={uid},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: {uid}\nuserPassword: {password}\n"
            ));
        }
        std::fs::write(dir.join("people.ldif"), ldif).expect("ldif");
        let loaded = Command::new("/usr/sbin/slapadd")
            .arg("-f")
            .arg(dir.join("slapd.conf"))
            .arg("-l")
            .arg(dir.join("people.ldif"))
            .output()
            .expect("slapadd");
        assert!(
            loaded.status.success(),
            "slapadd: {}",
            String::from_utf8_lossy(&loaded.stderr)
        );
        let child = Command::new(slapd)
            .arg("-f")
            .arg(dir.join("slapd.conf"))
            .args(["-h", &format!("ldap://127.0.0.1:{port}/"), "-d", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("slapd");
        wait_until(Duration::from_secs(20), "slapd to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Slapd { child, dir }
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn ldap_users_log_in_with_the_directorys_passwords() {
    let origin = Origin::start("127.0.0.1");
    let ldap_port = free_port("127.0.0.1");
    let slapd = Slapd::start(ldap_port);
    let text = format!(
        "resolver:\n  - name: default\n    type: c-ares\nescaper:\n  - name: default\n    type: direct_fixed\n    resolver: default\n    egress_network_filter: {{default: forbid, permit: [127.0.0.0/8]}}\nuser_group:\n  - name: directory\n    type: ldap\n    ldap_url: \"ldap://127.0.0.1:{ldap_port}/ou=people,{SUFFIX}\"\n    static_users:\n      - name: alice\n      - name: bob\n        dst_port_filter: 1\n    unmanaged_user:\n      name: anyone\n  - name: listed_only\n    type: ldap\n    ldap_url: \"ldap://127.0.0.1:{ldap_port}/ou=people,{SUFFIX}\"\n    static_users:\n      - name: alice\nserver:\n  - name: http\n    type: http_proxy\n    escaper: default\n    user_group: directory\n    listen: \"127.0.0.1:{{{{http_port}}}}\"\n  - name: listed\n    type: http_proxy\n    escaper: default\n    user_group: listed_only\n    listen: \"127.0.0.1:{{{{listed_port}}}}\"\n"
    );
    let mut group = Group::from_text(&text, &std::env::temp_dir(), &[]);
    group.start();
    let url = origin.url("/");
    let status = |server: &str, login: &str| {
        let proxy = format!("http://127.0.0.1:{}", group.port(server));
        curl_status(&["-x", &proxy, "-U", login, &url])
    };
    assert_eq!(status("http", "alice:wonderland"), "200");
    assert_eq!(status("http", "alice:wrong"), "407");
    // An empty password would be an anonymous bind, which directories accept.
    assert_eq!(status("http", "alice:"), "407");
    // Listed with a port filter: refused there, however the name is spelt (the directory
    // ignores case; a spelling must not make bob an unmanaged user without his filter).
    assert_eq!(status("http", "bob:builder"), "403");
    assert_eq!(status("http", "BoB:builder"), "403");
    // Known to the directory, not listed: the unmanaged user's keys.
    assert_eq!(status("http", "carol:c-pass"), "200");
    assert_eq!(status("http", "dave:anything"), "407");
    // A name that tries to bind as another entry stays one escaped value.
    assert_eq!(status("http", "alice,ou=people:wonderland"), "407");
    // Without unmanaged_user, only listed names.
    assert_eq!(status("listed", "alice:wonderland"), "200");
    assert_eq!(status("listed", "carol:c-pass"), "407");
    // The directory goes away: a password it accepted is remembered, others cannot be checked.
    drop(slapd);
    assert_eq!(status("http", "alice:wonderland"), "200");
    assert_eq!(status("http", "alice:other"), "407");
}
