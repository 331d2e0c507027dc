//! A real Kamailio 5.6 (Debian's `kamailio` packages) started on loopback with
//! `deploy/kamailio/selfprov-pbx.cfg`, on a database made from the SQL Kamailio ships
//! (`/usr/share/kamailio/<db>/standard-create.sql`, `auth_db-create.sql`, `usrloc-create.sql`):
//! the registrar the provisioned lines register at. Killed when dropped.

use super::{ports, read_lossy, repo_root, require_tool, tail};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kamailio's own schema files, in the order they must run.
const SCHEMA: [&str; 3] = ["standard", "auth_db", "usrloc"];

/// Creates Kamailio's tables in a new SQLite file `path` from Debian's SQL.
pub async fn create_sqlite_db(path: &Path) {
    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::{ConnectOptions, Connection};
    use std::str::FromStr;
    let mut c = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
        .unwrap()
        .create_if_missing(true)
        .connect()
        .await
        .unwrap();
    for name in SCHEMA {
        let file = format!("/usr/share/kamailio/db_sqlite/{name}-create.sql");
        let sql = std::fs::read_to_string(&file).unwrap_or_else(|e| {
            panic!("{file}: {e}: install kamailio-sqlite-modules (scripts/test.sh does)")
        });
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut c)
            .await
            .unwrap();
    }
    c.close().await.unwrap();
}

/// Creates Kamailio's tables in the PostgreSQL database at `url` from Debian's SQL.
pub async fn create_pg_schema(url: &str) {
    use sqlx::{Connection, PgConnection};
    let mut c = PgConnection::connect(url).await.unwrap();
    for name in SCHEMA {
        let file = format!("/usr/share/kamailio/postgres/{name}-create.sql");
        let sql = std::fs::read_to_string(&file).unwrap_or_else(|e| {
            panic!("{file}: {e}: install kamailio-postgres-modules (scripts/test.sh does)")
        });
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut c)
            .await
            .unwrap();
    }
    c.close().await.unwrap();
}

pub struct Kamailio {
    child: Child,
    pub addr: SocketAddr,
    pub log_path: PathBuf,
}

impl Kamailio {
    /// Starts Kamailio on a free loopback port (UDP and TCP) with `db_url` (Kamailio's
    /// spelling) and extra `-A` defines; waits until it answers SIP.
    pub fn start(workdir: &Path, db_url: &str, defines: &[&str]) -> Kamailio {
        let bin = require_tool("kamailio", "kamailio");
        let port = ports::free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let run_dir = workdir.join("kamailio-run");
        std::fs::create_dir_all(&run_dir).unwrap();
        let log_path = workdir.join("kamailio.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let cfg = repo_root().join("deploy/kamailio/selfprov-pbx.cfg");
        let mut cmd = Command::new(bin);
        cmd.arg("-f")
            .arg(&cfg)
            .args(["-DD", "-E", "-m", "64", "-M", "8", "-Y"])
            .arg(&run_dir)
            .arg("-l")
            .arg(format!("udp:{addr}"))
            .arg("-l")
            .arg(format!("tcp:{addr}"))
            .arg("-A")
            .arg(format!("DBURL=\"{db_url}\""));
        for d in defines {
            cmd.arg("-A").arg(d);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start kamailio");
        let mut k = Kamailio {
            child,
            addr,
            log_path,
        };
        k.wait_ready();
        k
    }

    /// Sends OPTIONS until Kamailio answers anything (bounded: 10 s).
    fn wait_ready(&mut self) {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let local = sock.local_addr().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut n = 0;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "kamailio exited ({status}) at start:\n{}",
                    tail(&read_lossy(&self.log_path), 40)
                );
            }
            n += 1;
            let msg = format!(
                "OPTIONS sip:{a} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKready{n}\r\n\
                 From: <sip:probe@{local}>;tag=p{n}\r\nTo: <sip:{a}>\r\nCall-ID: ready{n}@test\r\n\
                 CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
                a = self.addr
            );
            let _ = sock.send_to(msg.as_bytes(), self.addr);
            let mut buf = [0u8; 2048];
            if let Ok((len, _)) = sock.recv_from(&mut buf) {
                if buf[..len].starts_with(b"SIP/2.0 ") {
                    return;
                }
            }
        }
        panic!(
            "kamailio did not answer SIP on {} within 10 s:\n{}",
            self.addr,
            tail(&read_lossy(&self.log_path), 40)
        );
    }

    pub fn log(&self) -> String {
        read_lossy(&self.log_path)
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
