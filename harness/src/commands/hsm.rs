//! `dare hsm init-key`: the operator's way to create the HSM key a store's master keys are
//! wrapped under (docs/KEYS.md §5.4) without a vendor tool — generated inside the token,
//! never extractable, sensitive, for wrapping and unwrapping only.

use std::io::Write;

use anyhow::Result;
use serde_json::json;

use super::{Usage, print_json};
use crate::cli::JsonFlag;
use crate::settings::Settings;

/// `dare hsm init-key`.
pub fn init_key(s: &Settings, out: JsonFlag) -> Result<()> {
    let Some(h) = &s.hsm else {
        return Err(Usage(
            "dare hsm init-key needs the HSM: --hsm-module PATH, --hsm-token LABEL, --hsm-key \
             LABEL (the new key's label) and the PIN (--hsm-pin-file FILE or DARE_HSM_PIN)"
                .into(),
        )
        .into());
    };
    let root = dare_hsm::create_key(&h.config, &h.pin()?).map_err(dare::Error::from)?;
    if out.json {
        return print_json(&json!({
            "hsm_key": root.uri(),
            "token": h.config.token,
            "key": h.config.key,
            "key_type": "CKK_AES",
            "bits": 256,
            "extractable": false,
            "sensitive": true,
        }));
    }
    writeln!(
        crate::out::stdout(),
        "created the AES-256 key {} inside the HSM (never extractable, sensitive, wrap and \
         unwrap only); `dare init` with the same --hsm-* options creates a store protected by it",
        root.uri()
    )?;
    Ok(())
}
