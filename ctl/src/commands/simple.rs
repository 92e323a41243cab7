//! Answers with nothing to lay out: notices, versions and lists of names.

use g3proxy_shared::ipc::control::CtlResponse;

pub fn print(response: &CtlResponse) {
    match response {
        CtlResponse::Notice(text) => println!("notice: {text}"),
        CtlResponse::Version(version) => println!("{version}"),
        CtlResponse::Names(names) => names.iter().for_each(|name| println!("{name}")),
        CtlResponse::Text(text) => println!("{text}"),
        other => println!("{other:?}"),
    }
}
