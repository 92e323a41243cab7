//! `type: dummy_close`: accepts and closes. Also what a port hands its connections to when the
//! server it names does not exist.

use std::future::Future;
use std::sync::Arc;

use g3proxy_shared::config::servers::{DummyCloseConfig, ServerCommon};

use super::{BuildContext, ServeConnections};
use crate::conn::ClientConn;
use crate::context::TaskKind;
use crate::task::TaskContext;

pub struct DummyClose;

impl ServeConnections for DummyClose {
    type Config = DummyCloseConfig;

    const KIND: TaskKind = TaskKind::Other;

    fn build(_: &ServerCommon, _: &DummyCloseConfig, _: &BuildContext) -> anyhow::Result<Self> {
        Ok(DummyClose)
    }

    fn serve(
        self: Arc<Self>,
        conn: ClientConn,
        task: TaskContext,
    ) -> impl Future<Output = ()> + Send + 'static {
        drop((conn, task));
        std::future::ready(())
    }
}
