//! `escaper NAME publish DATA` or `escaper NAME publish -f FILE`: new bind addresses for a
//! direct_float escaper, or new peers for a proxy_float one. The text is checked to be JSON
//! here, so a typo is named before anything is sent; the supervisor checks its form.

use clap::Subcommand;
use g3proxy_shared::ipc::control::CtlRequest;

#[derive(Subcommand, Debug)]
pub enum EscaperAction {
    /// Publish JSON data to a float escaper (direct_float: {"ipv4": …, "ipv6": …};
    /// proxy_float: a peer or a list of peers)
    Publish {
        /// The JSON data
        #[arg(required_unless_present = "file", conflicts_with = "file")]
        data: Option<String>,
        /// Read the JSON data from a file
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: Option<std::path::PathBuf>,
    },
}

pub fn request(escaper: &str, action: &EscaperAction) -> Result<CtlRequest, String> {
    match action {
        EscaperAction::Publish { data, file } => {
            let data = match (data, file) {
                (Some(data), _) => data.clone(),
                (None, Some(file)) => std::fs::read_to_string(file)
                    .map_err(|e| format!("{}: cannot read: {e}", file.display()))?,
                (None, None) => return Err("publish needs DATA or --file FILE".into()),
            };
            serde_json::from_str::<serde_json::Value>(&data)
                .map_err(|e| format!("the data is not JSON: {e}"))?;
            Ok(CtlRequest::PublishEscaper {
                escaper: escaper.to_string(),
                data,
            })
        }
    }
}
