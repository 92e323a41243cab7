//! Basic credentials of an HTTP session, admitted through the server's gate: from
//! `Proxy-Authorization` (http_proxy) or `Authorization` (http_rproxy). A keep-alive client
//! sends the same value with every request; the same value as the last admitted on this
//! connection (or again none) is not checked again while its user is still the group's
//! current one (a crypt token takes milliseconds, and `connection_rate_limit` counts
//! connections, not requests); expiry and blocks are still checked, by every permit.

use g3proxy_proto::http1::{self, RequestHead};

use crate::auth::{Gate, Login};
use crate::error::TaskError;
use crate::task::TaskContext;

#[derive(Default)]
pub struct SessionLogin {
    /// The credentials header last admitted on this connection (`Some(None)`: admitted
    /// without one, as the anonymous user).
    admitted: Option<Option<Vec<u8>>>,
    /// Whether that header held Basic credentials, which were ours to consume.
    basic: bool,
    /// The group's users version then: unchanged, the user is still the group's.
    version: u64,
}

impl SessionLogin {
    /// Admits the request's credentials; answers whether they were Basic credentials (a
    /// gateway then keeps them from its upstream).
    pub async fn check(
        &mut self,
        gate: &Gate,
        task: &mut TaskContext,
        head: &RequestHead,
        header: &str,
    ) -> Result<bool, TaskError> {
        if let Some(known) = self.known(gate, task, head, header) {
            return Ok(known);
        }
        // Boxed: a login may wait on a directory, and that wait's state would otherwise
        // make every connection's future larger, idle tunnels included.
        Box::pin(self.admit(gate, task, head, header)).await
    }

    /// The answer without waiting: no users, or the credentials admitted last on this
    /// connection (or again none) while their user is still the group's.
    fn known(
        &self,
        gate: &Gate,
        task: &TaskContext,
        head: &RequestHead,
        header: &str,
    ) -> Option<bool> {
        if !gate.has_users() {
            return Some(false);
        }
        let admitted = self.admitted.as_ref()?;
        if admitted.as_deref() != head.header(header) {
            return None;
        }
        let user = task.user.as_ref()?;
        let current = self.version == gate.users_version() || gate.is_current(user);
        current.then_some(self.basic)
    }

    async fn admit(
        &mut self,
        gate: &Gate,
        task: &mut TaskContext,
        head: &RequestHead,
        header: &str,
    ) -> Result<bool, TaskError> {
        let value = head.header(header);
        self.admitted = None;
        task.user = None;
        let version = gate.users_version();
        let credentials = value
            .map(http1::basic_credentials)
            .transpose()
            .map_err(|e| TaskError::Client(format!("{header}: {e}")))?
            .flatten();
        let login = credentials.as_ref().map(|c| Login {
            user: &c.user,
            password: c.password.as_bytes(),
        });
        gate.admit(task, login).await?;
        self.admitted = Some(value.map(<[u8]>::to_vec));
        self.basic = credentials.is_some();
        self.version = version;
        Ok(self.basic)
    }
}
