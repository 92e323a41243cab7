//! Scenario: every `proxy_*` escaper against a second group of ours as its next hop. The
//! front group's HTTP proxies each leave through one escaper: `proxy_http` and `proxy_https`
//! to the next group's HTTP proxy (plain, and under TLS with the test CA), `proxy_socks5` and
//! `proxy_socks5s` to its SOCKS proxy (plain, and behind a `plain_tls_port`). The next group
//! wants a login (`open` with any password, through Basic and RFC 1929), which only the
//! escapers have; its own egress reaches the origin. Checked: forwarded requests and `CONNECT`
//! tunnels arrive, a target name travels to the next hop to be resolved there, and a next hop
//! that refuses our login is the client's 502.

use g3proxy_tests::{Certs, Group, Origin, curl, curl_status};

const NEXT: &str = "resolver:
  - {name: default, type: c-ares}
escaper:
  - name: default
    type: direct_fixed
    resolver: default
    egress_network_filter: {default: forbid, permit: [127.0.0.0/8]}
user_group:
  - name: hops
    static_users:
      - name: hop
        token:
          salt: 113323bdab6fd2cc
          md5: 5c81f2becadde7fa5fde9026652ccc84
          sha1: ff9d5c1a14328dd85ee95d4e574bd0558a1dfa96
server:
  - {name: http, type: http_proxy, escaper: default, user_group: hops, listen: \"127.0.0.1:{{http_port}}\"}
  - name: https
    type: http_proxy
    escaper: default
    user_group: hops
    listen: \"127.0.0.1:{{https_port}}\"
    tls_server: {certificate: server.pem, private_key: server.key}
  - {name: socks, type: socks_proxy, escaper: default, user_group: hops, listen: \"127.0.0.1:{{socks_port}}\"}
  - name: socks_tls
    type: plain_tls_port
    listen: \"127.0.0.1:{{socks_tls_port}}\"
    server: socks
    tls_server: {certificate: server.pem, private_key: server.key}
";

#[test]
fn each_proxy_escaper_chains_through_a_second_group() {
    let origin = Origin::start("127.0.0.1");
    let mut next = Group::from_text(NEXT, &std::env::temp_dir(), &[]);
    let certs = Certs::make(&next.dir);
    next.start();
    // The guide's test vector: user `hop`, password "toor".
    let login = "proxy_username: hop\n    proxy_password: toor";
    let tls = "tls_client: {ca_certificate: ca.pem}\n    tls_name: localhost";
    let front_text = format!(
        "resolver:\n  - {{name: default, type: c-ares}}\nescaper:
  - name: via_http
    type: proxy_http
    proxy_addr: 127.0.0.1:{http}
    {login}
  - name: via_https
    type: proxy_https
    proxy_addr: 127.0.0.1:{https}
    {login}
    {tls}
  - name: via_socks5
    type: proxy_socks5
    proxy_addr: 127.0.0.1:{socks}
    {login}
  - name: via_socks5s
    type: proxy_socks5s
    proxy_addr: 127.0.0.1:{socks_tls}
    {login}
    {tls}
  - name: wrong_login
    type: proxy_socks5
    proxy_addr: 127.0.0.1:{socks}
    proxy_username: hop
    proxy_password: wrong
server:
  - {{name: http, type: http_proxy, escaper: via_http, listen: \"127.0.0.1:{{{{http_port}}}}\"}}
  - {{name: https, type: http_proxy, escaper: via_https, listen: \"127.0.0.1:{{{{https_port}}}}\"}}
  - {{name: socks5, type: http_proxy, escaper: via_socks5, listen: \"127.0.0.1:{{{{socks5_port}}}}\"}}
  - {{name: socks5s, type: http_proxy, escaper: via_socks5s, listen: \"127.0.0.1:{{{{socks5s_port}}}}\"}}
  - {{name: wrong, type: http_proxy, escaper: wrong_login, listen: \"127.0.0.1:{{{{wrong_port}}}}\"}}
",
        http = next.port("http"),
        https = next.port("https"),
        socks = next.port("socks"),
        socks_tls = next.port("socks_tls"),
    );
    let mut front = Group::from_text(&front_text, &std::env::temp_dir(), &[]);
    // The front trusts the next group's CA.
    std::fs::copy(certs.path("ca.pem"), front.dir.join("ca.pem")).expect("copy the CA");
    front.start();

    let by_address = origin.url("/");
    let by_name = format!("http://localhost:{}/", origin.addr.port());
    for server in ["http", "https", "socks5", "socks5s"] {
        let proxy = format!("http://127.0.0.1:{}", front.port(server));
        assert_eq!(
            curl(&["-x", &proxy, &by_address]),
            "hello",
            "{server}: forward"
        );
        assert_eq!(
            curl(&["-p", "-x", &proxy, &by_address]),
            "hello",
            "{server}: CONNECT"
        );
        assert_eq!(
            curl(&["-x", &proxy, &by_name]),
            "hello",
            "{server}: a name the next hop resolves"
        );
    }
    let wrong = format!("http://127.0.0.1:{}", front.port("wrong"));
    assert_eq!(curl_status(&["-x", &wrong, &by_address]), "502");
}
