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
}

impl SessionLogin {
    /// Admits the request's credentials; answers whether they were Basic credentials (a
    /// gateway then keeps them from its upstream).
    pub async fn admit(
        &mut self,
        gate: &Gate,
        task: &mut TaskContext,
        head: &RequestHead,
        header: &str,
    ) -> Result<bool, TaskError> {
        if !gate.has_users() {
            return Ok(false);
        }
        let value = head.header(header);
        if let Some(admitted) = &self.admitted
            && admitted.as_deref() == value
            && task.user.as_ref().is_some_and(|user| gate.is_current(user))
        {
            return Ok(self.basic);
        }
        self.admitted = None;
        task.user = None;
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
        Ok(self.basic)
    }
}
