//! `g3fcgen`: will issue fake certificates for TLS interception on request from workers.
//! Not implemented yet; it says so and exits non-zero so nothing mistakes it for a service.

use std::process::ExitCode;

fn main() -> ExitCode {
    if std::env::args().any(|a| a == "-V" || a == "--version") {
        println!(
            "g3fcgen {} (not implemented yet)",
            env!("CARGO_PKG_VERSION")
        );
        return ExitCode::SUCCESS;
    }
    eprintln!("g3fcgen: not implemented yet: TLS interception comes with its own issue");
    ExitCode::FAILURE
}
