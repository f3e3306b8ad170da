//! Stage 3: each board with its SoC folded in.
//!
//! The board's `gic`, `timer`, `pmu` and `stage2` replace the SoC's whole; a board `device` named like
//! a SoC device overrides it property by property (see [`merge`]). The result is the same
//! [`BoardDecl`], still carrying spans, that [`crate::check`] judges and [`crate::lower`]
//! turns into the model.

use miette::{Diagnostic, SourceSpan};
use thiserror::Error;

use crate::decl::{BoardDecl, DeviceDecl, SocDecl};
use crate::text::did_you_mean;

/// A merge error: the board's `soc=` names no SoC of the file.
#[derive(Clone, Debug, Error, Diagnostic)]
pub enum MergeError {
    /// `soc=` names no `soc` node.
    #[error("unknown soc `{name}`")]
    #[diagnostic(code(platform_dsl::unknown_soc))]
    UnknownSoc {
        /// The name written.
        name: String,
        /// The property.
        #[label("no `soc \"{name}\"` in this file")]
        span: SourceSpan,
        /// Did you mean / known socs.
        #[help]
        help: String,
    },
}

/// A board merged with its SoC, and what the checks need to know about how it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Merged {
    /// The board, its SoC's `gic`/`timer`/`pmu` and devices folded in.
    pub board: BoardDecl,
    /// Whether `soc=` named a SoC of the file (without it the device list is incomplete).
    pub soc_resolved: bool,
    /// Child nodes written in the SoC and the board, decoded or not: a required node that
    /// was written but broken is already reported, so the checks do not call it missing.
    pub written: Vec<String>,
}

/// Folds the SoC that `board`'s `soc=` names (the first of that name in `socs`) into it.
///
/// Without `soc=` the board stands alone (its missing `soc` is a decoding error); with a
/// `soc=` that names no SoC, the board still merges alone and the error says which SoCs
/// exist.
pub fn merge(socs: &[SocDecl], board: &BoardDecl) -> (Merged, Option<MergeError>) {
    let mut error = None;
    let soc = board.soc.as_ref().and_then(|name| {
        let found = socs.iter().find(|s| s.name.value == name.value);
        if found.is_none() {
            let known: Vec<&str> = socs.iter().map(|s| s.name.value.as_str()).collect();
            error = Some(MergeError::UnknownSoc {
                name: name.value.clone(),
                span: name.span,
                help: did_you_mean(&name.value, &known, "socs in this file"),
            });
        }
        found
    });
    let written = soc
        .iter()
        .flat_map(|s| &s.written)
        .chain(&board.written)
        .cloned()
        .collect();
    let merged = Merged {
        board: fold(soc, board),
        soc_resolved: soc.is_some(),
        written,
    };
    (merged, error)
}

/// The board with `soc`'s parts folded in.
///
/// A board device named like a SoC device overrides it property by property: each of
/// `compatible`, `status`, `reason`, `bus-id`, `clock` given on the board replaces the
/// SoC's, and `reg`s / `irq`s given on the board replace the SoC's list. Setting
/// `status="okay"` drops the SoC's reason.
fn fold(soc: Option<&SocDecl>, board: &BoardDecl) -> BoardDecl {
    let mut devices: Vec<DeviceDecl> = soc.map(|s| s.devices.clone()).unwrap_or_default();
    for d in &board.devices {
        match devices.iter_mut().find(|s| s.name.value == d.name.value) {
            Some(base) => override_device(base, d),
            None => devices.push(d.clone()),
        }
    }
    BoardDecl {
        gic: board
            .gic
            .clone()
            .or_else(|| soc.and_then(|s| s.gic.clone())),
        timer: board
            .timer
            .clone()
            .or_else(|| soc.and_then(|s| s.timer.clone())),
        pmu: board
            .pmu
            .clone()
            .or_else(|| soc.and_then(|s| s.pmu.clone())),
        stage2: board
            .stage2
            .clone()
            .or_else(|| soc.and_then(|s| s.stage2.clone())),
        devices,
        ..board.clone()
    }
}

fn override_device(base: &mut DeviceDecl, over: &DeviceDecl) {
    // The board's entry is where a reader looks first: point messages at it.
    base.name = over.name.clone();
    if over.compatible.is_some() {
        base.compatible = over.compatible.clone();
    }
    if let Some(okay) = &over.okay {
        if okay.value && over.reason.is_none() {
            base.reason = None;
        }
        base.okay = Some(okay.clone());
    }
    if over.reason.is_some() {
        base.reason = over.reason.clone();
    }
    if over.bus_id.is_some() {
        base.bus_id = over.bus_id.clone();
    }
    if !over.regs.is_empty() {
        base.regs = over.regs.clone();
    }
    if !over.irqs.is_empty() {
        base.irqs = over.irqs.clone();
    }
    if over.clock.is_some() {
        base.clock = over.clock.clone();
    }
    if over.dma_coherent.is_some() {
        base.dma_coherent = over.dma_coherent.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decl::fixtures::{dev, sp};

    fn board(soc: Option<&str>, devices: Vec<DeviceDecl>) -> BoardDecl {
        BoardDecl {
            name: sp("b".to_owned()),
            soc: soc.map(|s| sp(s.to_owned())),
            model: None,
            support: None,
            verified_by: None,
            topology: None,
            cpus: None,
            cpus_span: None,
            memory: vec![],
            hypervisor: None,
            console: None,
            console_unavailable: None,
            gic: None,
            timer: None,
            pmu: None,
            devices,
            quirks: vec![],
            network: None,
            stage2: None,
            numa_distances: None,
            written: vec!["device".to_owned()],
        }
    }

    fn soc(name: &str) -> SocDecl {
        SocDecl {
            name: sp(name.to_owned()),
            gic: None,
            timer: None,
            pmu: None,
            devices: vec![dev("uart0")],
            stage2: None,
            written: vec!["gic".to_owned(), "device".to_owned()],
        }
    }

    #[test]
    fn board_device_overrides_only_the_properties_it_gives() {
        let mut base = dev("uart0");
        let over = DeviceDecl {
            okay: Some(sp(false)),
            reason: Some(sp("used by firmware".to_owned())),
            compatible: None,
            irqs: vec![],
            clock: None,
            ..dev("uart0")
        };
        override_device(&mut base, &over);
        assert_eq!(base.compatible, Some(vec![sp("arm,pl011".to_owned())]));
        assert_eq!(base.irqs.len(), 1);
        assert_eq!(base.clock, Some(sp(24_000_000)));
        assert_eq!(base.okay, Some(sp(false)));
        assert_eq!(base.reason, Some(sp("used by firmware".to_owned())));
    }

    #[test]
    fn soc_devices_come_first_then_new_board_devices() {
        let (m, err) = merge(&[soc("s")], &board(Some("s"), vec![dev("uart1")]));
        assert!(err.is_none());
        let names: Vec<&str> = m
            .board
            .devices
            .iter()
            .map(|d| d.name.value.as_str())
            .collect();
        assert_eq!(names, ["uart0", "uart1"]);
        assert!(m.soc_resolved);
        assert_eq!(m.written, ["gic", "device", "device"]);
    }

    #[test]
    fn an_unknown_soc_is_an_error_and_the_board_merges_alone() {
        let (m, err) = merge(&[soc("s")], &board(Some("t"), vec![]));
        assert!(matches!(err, Some(MergeError::UnknownSoc { ref name, .. }) if name == "t"));
        assert!(!m.soc_resolved);
        assert!(m.board.devices.is_empty());
    }
}
