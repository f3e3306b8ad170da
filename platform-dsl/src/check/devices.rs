//! Rules on devices: status and reason, a way to match a driver, the console.

use super::{CheckError, Checker};
use crate::decl::BoardDecl;
use crate::text::did_you_mean;

impl Checker {
    pub(super) fn check_devices(&mut self, b: &BoardDecl) {
        for d in &b.devices {
            let okay = d.okay.as_ref().is_none_or(|s| s.value);
            match (okay, &d.reason) {
                (false, None) => self.errors.push(CheckError::DeviceStatus {
                    name: d.name.value.clone(),
                    problem: "is disabled without a reason".to_owned(),
                    span: d.okay.as_ref().map_or(d.name.span, |s| s.span),
                    help: "add `reason=\"...\"` saying why it cannot be used (it is shown in the boot banner)".to_owned(),
                }),
                (true, Some(r)) => self.errors.push(CheckError::DeviceStatus {
                    name: d.name.value.clone(),
                    problem: "has a `reason=` but is not disabled".to_owned(),
                    span: r.span,
                    help: "add `status=\"disabled\"`, or remove `reason=`".to_owned(),
                }),
                _ => {}
            }
            if d.compatible.is_none() && d.bus_id.is_none() {
                self.errors.push(CheckError::Missing {
                    node: format!("device \"{}\"", d.name.value),
                    what: "property `compatible` (or `bus-id`)".to_owned(),
                    span: d.name.span,
                    help: "add `compatible=\"vendor,device\"` so a driver can match it (or `bus-id=\"usb:VID:PID\"` for a bus device)".to_owned(),
                });
            }
        }
    }

    pub(super) fn check_console(&mut self, b: &BoardDecl) {
        let Some(c) = &b.console else { return };
        match b.devices.iter().find(|d| d.name.value == c.value) {
            None => {
                let names: Vec<&str> = b.devices.iter().map(|d| d.name.value.as_str()).collect();
                self.errors.push(CheckError::Console {
                    name: c.value.clone(),
                    problem: "names no device".to_owned(),
                    span: c.span,
                    help: did_you_mean(&c.value, &names, "devices of this board and its soc"),
                });
            }
            Some(d) if d.okay.as_ref().is_some_and(|s| !s.value) => {
                self.errors.push(CheckError::Console {
                    name: c.value.clone(),
                    problem: "is disabled".to_owned(),
                    span: c.span,
                    help: format!("pick an enabled UART as console, or enable `{}` (remove status=\"disabled\")", c.value),
                });
            }
            Some(_) => {}
        }
    }
}
