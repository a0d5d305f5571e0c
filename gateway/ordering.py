"""Strict delivery order (a webhook's deliveryOrder Strict, issue 22): the rule the store keeps
for such a webhook's queue, and what its history says of a notification held back by it.

A Strict webhook's queue is its notifications that are pending, parked or waiting. At most one
of them is pending or parked: the head, the one of lowest sequence; every other one waits
(state `waiting`: never claimed, parked, released or counted as pending). A claim reads pending
rows only, so it can never take two notifications of a Strict webhook, nor a later one before
the head, and the claim query knows nothing of the order: a Strict webhook blocked behind a
failing head costs the claims of every other webhook nothing.

    publish          a Strict webhook's new notifications wait; the lowest becomes the head if
                     the queue had none (pending if the webhook is Active, parked if not)
    settlement       a delivered head, or one failed for good, leaves the queue and the next
                     becomes the head; a failed one is retried in its place (pending again, due
                     at its retry), so nothing after it goes out before it
    park, release    move the head only: its queue parks and resumes in order
    hand retry       the notification joins the queue again, in its sequence place
    Unordered→Strict its pending and parked notifications join the queue; those in flight
                     finish first: until they settle, none of the others is the head
    Strict→Unordered every waiting notification is pending (parked if the webhook is not Active)

In flight means pending or parked under a lease that has not run out: a worker may be sending
it. A lease that runs out (its worker died) leaves the head pending, so the next claim takes the
same notification again, first.

One store step restores the rule wherever a queue changes, in the same transaction, with the
webhook's row locked (`SqlStore._normalize`): every unleased pending or parked notification
that is not the head waits (all of them while one is in flight), and when none is left pending
or parked and none is in flight, the lowest waiting one becomes the head. Each is found by the
index of queues (migration sqlite 0015, postgres 0014) on the column `queued`: 1 waiting, 2 the
head or one in flight (pending or parked), NULL in no queue. Only the queues' own statements write
that column, never a claim or a settlement, so an Unordered webhook's notifications never
enter the index nor pay for it.

The periodic check (`Store.check_invariants`) counts and repairs what breaks the rule
(store.base.INVARIANTS): a queue with no head and none in flight, a pending or parked
notification that is not its queue's head, and a waiting notification of an Unordered webhook.
"""

WAITING_MESSAGE = "waiting behind an earlier notification (deliveryOrder Strict)"
UNORDERED_MESSAGE = "due: the webhook's deliveryOrder is Unordered now"
