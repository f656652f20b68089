//! `[[cluster.hook]]` commands placed among a host's steps ([`weave`]).

use crate::config::render;
use crate::inventory::{Hook, HookPoint, Host, Inventory};

use super::step::{HookCommand, Step};

/// `steps` (a host's, of a change run or, with `rollback`, of a rollback) with a
/// [`Step::Hook`] at each point `inv`'s hooks name for `host`'s role: before the gate
/// (`before = "stop"`: the fresh look stays right before the stop), after the stop, before
/// the start, after the health gate. Hooks of one point run in inventory order, in one step.
/// A point whose anchor step is not in `steps` gets no hook.
pub fn weave(steps: Vec<Step>, inv: &Inventory, host: &Host, rollback: bool) -> Vec<Step> {
    let hooks: Vec<&Hook> = inv
        .cluster
        .hooks
        .iter()
        .filter(|h| h.applies_to(&host.role) && if rollback { h.rollback } else { h.change })
        .collect();
    if hooks.is_empty() {
        return steps;
    }
    let at = |point: HookPoint| -> Option<Step> {
        let commands: Vec<HookCommand> = hooks
            .iter()
            .filter(|h| h.point == point)
            .map(|h| HookCommand {
                on: h.on,
                // The inventory refused unknown placeholders.
                run: render(&h.run, host).unwrap_or_else(|_| h.run.clone()),
                timeout: h.timeout,
            })
            .collect();
        (!commands.is_empty()).then_some(Step::Hook {
            point,
            rollback,
            commands,
        })
    };
    let mut out = Vec::with_capacity(steps.len() + 4);
    for step in steps {
        let (before, after) = match &step {
            Step::Gate { .. } | Step::RollbackGate { .. } => (at(HookPoint::BeforeStop), None),
            Step::Stop(_) | Step::RollbackStop(_) => (None, at(HookPoint::AfterStop)),
            Step::Start(_) | Step::RollbackStart(_) => (at(HookPoint::BeforeStart), None),
            Step::Health { .. } | Step::RollbackHealth { .. } => (None, at(HookPoint::AfterHealth)),
            _ => (None, None),
        };
        out.extend(before);
        out.push(step);
        out.extend(after);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::inventory::tests_support::three_etcd_with;
    use crate::inventory::HookOn;
    use crate::journal::StepId;
    use crate::plan::UnitStep;

    fn unit() -> UnitStep {
        UnitStep {
            unit: "etcd".into(),
            script: String::new(),
            wait: Duration::from_secs(1),
            signal: None,
        }
    }

    #[test]
    fn hooks_go_around_their_anchor_steps_rendered_for_the_host() {
        let inv = three_etcd_with(
            r#"
[[cluster.hook]]
after = "stop"
on = "member"
run = "etcdctl member list | grep -q {name}"

[[cluster.hook]]
after = "stop"
run = "echo {address}"
during = ["change"]

[[cluster.hook]]
before = "stop"
run = "check {role}"
roles = ["other"]

[[cluster.hook]]
after = "health"
on = "leader"
run = "check {name}"
during = ["rollback"]
"#,
        );
        let h = &inv.hosts[1];
        let wait = Duration::from_secs(1);
        let change = vec![
            Step::Gate { strict: true, wait },
            Step::Stop(unit()),
            Step::Start(unit()),
            Step::Health { version: None, wait },
        ];
        let woven = weave(change, &inv, h, false);
        let ids: Vec<StepId> = woven.iter().map(Step::id).collect();
        assert_eq!(
            ids,
            [
                StepId::Gate,
                StepId::Stop,
                StepId::HookAfterStop,
                StepId::Start,
                StepId::Health
            ]
        );
        let Step::Hook { commands, .. } = &woven[2] else {
            panic!("{woven:?}")
        };
        assert_eq!(commands.len(), 2);
        assert_eq!(commands[0].on, HookOn::Member);
        assert_eq!(commands[0].run, "etcdctl member list | grep -q node2");
        assert_eq!(
            (commands[1].on, commands[1].run.as_str()),
            (HookOn::Host, "echo 10.77.0.12")
        );

        let back = vec![
            Step::RollbackGate { wait },
            Step::RollbackStop(unit()),
            Step::RollbackStart(unit()),
            Step::RollbackHealth {
                version: "3.4.23".into(),
                wait,
            },
        ];
        let ids: Vec<StepId> = weave(back, &inv, h, true).iter().map(Step::id).collect();
        assert_eq!(
            ids,
            [
                StepId::RollbackGate,
                StepId::RollbackStop,
                StepId::RollbackHookAfterStop,
                StepId::RollbackStart,
                StepId::RollbackHealth,
                StepId::RollbackHookAfterHealth
            ]
        );
        assert!(ids.iter().all(|i| i.is_rollback()));
    }
}
