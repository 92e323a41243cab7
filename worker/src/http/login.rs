//! Basic credentials of an HTTP session, admitted through the server's gate: from
//! `Proxy-Authorization` (http_proxy) or `Authorization` (http_rproxy). A keep-alive client
//! sends the same value with every request; a value admitted before on this connection is
//! not checked again (a crypt token takes milliseconds), while expiry and blocks still are,
//! by every permit.

use g3proxy_proto::http1::{self, RequestHead};

use crate::auth::{Gate, Login};
use crate::error::TaskError;
use crate::task::TaskContext;

#[derive(Default)]
pub struct SessionLogin {
    /// The credentials header last admitted on this connection.
    admitted: Option<Vec<u8>>,
}

impl SessionLogin {
    pub async fn admit(
        &mut self,
        gate: &Gate,
        task: &mut TaskContext,
        head: &RequestHead,
        header: &str,
    ) -> Result<(), TaskError> {
        if !gate.has_users() {
            return Ok(());
        }
        let value = head.header(header);
        if value.is_some() && value == self.admitted.as_deref() && task.user.is_some() {
            return Ok(());
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
        self.admitted = value.map(<[u8]>::to_vec);
        Ok(())
    }
}
