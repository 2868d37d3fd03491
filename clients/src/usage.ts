// How the dashboard uses the generated types: `npm run check` (codegen, then tsc
// --strict) fails if a document, a scalar mapping or a variable's type goes wrong.
import type { ApolloClient } from "@apollo/client/core";

import {
  ConnectionEventsDocument,
  PlanDocument,
  TicketEventsDocument,
  UpgradePlanDocument,
  WalletDocument,
  type ConnectionEventsSubscription,
  type PlanQuery,
  type TicketStatus,
  type UpgradePlanMutation,
} from "./gql/graphql.js";

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
type Subscription = NonNullable<PlanQuery["viewer"]["partner"]>["revampdConnection"]["subscription"];

// Custom scalars arrive as strings, never `unknown` or `any`.
export const decimalIsAString: Equal<Subscription["plan"]["monthlyPrice"]["amount"], string> = true;
export const dateTimeIsAString: Equal<Subscription["currentPeriodEnd"], string> = true;
// Enums are their values.
export const kinds: Array<NonNullable<Subscription["pendingChange"]>["kind"]> = ["UPGRADE", "DOWNGRADE", "CANCEL"];

/** Money in minor units (cents), from the API's exact decimal string. */
export function minorUnits(amount: string): number {
  const match = /^(-?)(\d+)\.(\d{2})$/.exec(amount);
  if (!match) throw new Error(`not an amount: ${amount}`);
  const [, sign = "", whole = "0", cents = "0"] = match;
  return (sign ? -1 : 1) * (Number(whole) * 100 + Number(cents));
}

/** The Plan page's summary line: the tier, its price, and what is pending. */
export async function planSummary(client: ApolloClient): Promise<string> {
  const { data } = await client.query({ query: PlanDocument, variables: { first: 5 } });
  const connection = data?.viewer.partner?.revampdConnection;
  if (!connection) return "No Revampd connection";
  const { plan, pendingChange } = connection.subscription;
  const price = `${plan.monthlyPrice.amount} ${plan.monthlyPrice.currencyCode}`;
  const pending = pendingChange ? `, ${pendingChange.kind} to ${pendingChange.targetPlan?.name ?? "none"} on ${pendingChange.effectiveAt}` : "";
  return `${plan.name} (${price}/month${pending})`;
}

/** Upgrade, returning the errors to show beside the form's fields. */
export async function upgrade(client: ApolloClient, planId: string): Promise<Map<string, string>> {
  const { data } = await client.mutate({ mutation: UpgradePlanDocument, variables: { input: { planId } } });
  const payload: UpgradePlanMutation["upgradePlan"] | undefined = data?.upgradePlan;
  const errors = new Map<string, string>();
  for (const error of payload?.userErrors ?? []) {
    errors.set((error.field ?? []).join("."), `${error.code}: ${error.message}`);
  }
  return errors;
}

export async function walletBalance(client: ApolloClient): Promise<number> {
  const { data } = await client.query({ query: WalletDocument, variables: { first: 10, after: null } });
  return minorUnits(data?.viewer.partner?.revampdConnection.wallet.balance.amount ?? "0");
}

// Live updates: an event's node is a union discriminated by __typename, with the fields the
// subscription document selects for each type (same-named fields of other types aliased).
type LiveNode = ConnectionEventsSubscription["connectionEvents"]["node"];
export const ticketStatusIsItsEnum: Equal<Extract<LiveNode, { __typename: "Ticket" }>["status"], TicketStatus> = true;

/** The dashboard's toast for an event (Apollo's cache updates the open pages by the node's id). */
export function eventToast(node: LiveNode): string {
  switch (node.__typename) {
    case "Ticket":
      return `Ticket ${node.number} "${node.title}" is ${node.status}`;
    case "TicketMessage":
      return `New message from ${node.author?.name ?? "Revampd"}`;
    case "Invoice":
      return `Invoice ${node.number} is ${node.invoiceStatus}: ${node.amountDue.amount} ${node.amountDue.currencyCode} due`;
    case "Payout":
      return `Payout of ${node.amount.amount} is ${node.payoutStatus}`;
    case "BankTransfer":
      return `Transfer to ${node.bankAccount?.bankName ?? "your bank"} is ${node.transferStatus}`;
    case "Wallet":
      return `Wallet balance: ${node.balance.amount}`;
    default:
      return `${node.__typename} changed`;
  }
}

/** Follow the connection from the last event had (`after`), keeping its cursor for next time. */
export function followConnection(client: ApolloClient, after: string | null, onEvent: (cursor: string, toast: string) => void) {
  return client.subscribe({ query: ConnectionEventsDocument, variables: { after } }).subscribe(({ data }) => {
    if (data) onEvent(data.connectionEvents.cursor, eventToast(data.connectionEvents.node));
  });
}

export function followTicket(client: ApolloClient, ticketId: string) {
  // @ts-expect-error: ticketEvents needs the ticket's id
  client.subscribe({ query: TicketEventsDocument, variables: {} });
  return client.subscribe({ query: TicketEventsDocument, variables: { ticketId } });
}

export async function misuse(client: ApolloClient): Promise<void> {
  // @ts-expect-error: the input is required
  await client.mutate({ mutation: UpgradePlanDocument, variables: {} });
  // @ts-expect-error: no such variable
  await client.query({ query: PlanDocument, variables: { firstt: 5 } });
  const { data } = await client.query({ query: PlanDocument });
  // @ts-expect-error: the partner may be null (a Revampd staff user has none)
  data?.viewer.partner.name;
}
