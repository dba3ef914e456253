//! Topology of the two simulated pipelines: which agents exist, which flow
//! each belongs to, which event type it consumes and which it may emit.

use super::event::EventType;

/// Which of the two demo flows an agent belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Support,
    Doc,
}

impl Flow {
    /// Base name of the flow's dead-letter topic.
    pub fn dlq_topic(self) -> &'static str {
        match self {
            Flow::Support => "support.dlq",
            Flow::Doc => "doc.dlq",
        }
    }
}

/// The simulated agents. Sources (intake, doc extractor) produce on a timer;
/// every other agent consumes the previous event type in its own group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agent {
    Intake,
    Classifier,
    Knowledge,
    Qa,
    Delivery,
    DocExtractor,
    DocValidator,
    EntityResolver,
}

impl Agent {
    pub const ALL: [Agent; 8] = [
        Agent::Intake,
        Agent::Classifier,
        Agent::Knowledge,
        Agent::Qa,
        Agent::Delivery,
        Agent::DocExtractor,
        Agent::DocValidator,
        Agent::EntityResolver,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Agent::Intake => "intake-agent",
            Agent::Classifier => "classifier-agent",
            Agent::Knowledge => "knowledge-agent",
            Agent::Qa => "qa-agent",
            Agent::Delivery => "delivery-agent",
            Agent::DocExtractor => "doc-extractor",
            Agent::DocValidator => "doc-validator",
            Agent::EntityResolver => "entity-resolver",
        }
    }

    pub fn from_name(name: &str) -> Option<Agent> {
        Agent::ALL.into_iter().find(|a| a.name() == name)
    }

    pub fn flow(self) -> Flow {
        match self {
            Agent::Intake | Agent::Classifier | Agent::Knowledge | Agent::Qa | Agent::Delivery => Flow::Support,
            Agent::DocExtractor | Agent::DocValidator | Agent::EntityResolver => Flow::Doc,
        }
    }

    /// The event type this agent consumes; `None` for sources.
    pub fn input(self) -> Option<EventType> {
        match self {
            Agent::Intake | Agent::DocExtractor => None,
            Agent::Classifier => Some(EventType::TicketCreated),
            Agent::Knowledge => Some(EventType::TicketClassified),
            Agent::Qa => Some(EventType::AnswerDrafted),
            Agent::Delivery => Some(EventType::AnswerApproved),
            Agent::DocValidator => Some(EventType::DocExtracted),
            Agent::EntityResolver => Some(EventType::DocValidated),
        }
    }

    /// Event types this agent may emit (first one is the "happy path").
    pub fn outputs(self) -> &'static [EventType] {
        match self {
            Agent::Intake => &[EventType::TicketCreated],
            Agent::Classifier => &[EventType::TicketClassified],
            Agent::Knowledge => &[EventType::AnswerDrafted],
            Agent::Qa => &[EventType::AnswerApproved, EventType::AnswerRejected],
            Agent::Delivery => &[EventType::AnswerSent],
            Agent::DocExtractor => &[EventType::DocExtracted],
            Agent::DocValidator => &[EventType::DocValidated, EventType::DocValidationFailed],
            Agent::EntityResolver => &[EventType::DocEntitiesResolved],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_names_round_trip() {
        for a in Agent::ALL {
            assert_eq!(Agent::from_name(a.name()), Some(a));
        }
        assert_eq!(Agent::from_name("nope"), None);
    }

    #[test]
    fn every_consumed_type_is_emitted_upstream() {
        for a in Agent::ALL {
            if let Some(input) = a.input() {
                assert!(Agent::ALL.iter().any(|u| u.flow() == a.flow() && u.outputs().contains(&input)));
            }
        }
    }
}
