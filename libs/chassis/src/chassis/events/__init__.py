"""Events: the transactional outbox, its relay to Pub/Sub, and subscribers with an inbox.

Shared by both sides:
    schema        the outbox, inbox, inbox_failures and dead_letters tables; lanes
    cloudevents   the CloudEvents attributes of a message (binary mode)
    clients       Pub/Sub clients, topic and subscription paths, provisioning
    decoding      a message as an event: the class by ce-type, ReceivedEvent

Producing (in the business transaction, then published by ``astra-relay``):
    writer        OutboxMessage, OutboxWriter (NOTIFY at commit), with_trace_context
    relay         Relay and RelayParts: the publish pipeline and its collaborators
    outbox_store  the relay's reads, marks, lag and purge of the outbox table
    publishing    publish requests per lane, rows as messages, topic provisioning
    leases        which lanes a relay owns (advisory locks, or a file on SQLite)
    listener      LISTEN for the writer's NOTIFY
    relay_settings, relay_main   RELAY_* settings and the ``astra-relay`` command

Consuming:
    subscriber    subscribe(...) and EventSubscriber: inbox, ack after commit, retries
    inbox         the inbox and failure counts (SQL)
    dead_letters  the dead-letter row and the dead-letter topic copy
    streaming     the streaming pull, flow control and worker threads
    tail          the ``astra-events`` command

Nothing is re-exported here: importing ``chassis.events.schema`` (every
service's tables) does not load the Pub/Sub client.
"""
