import { expect } from "chai";
import { Code, createClient, createRouterTransport } from "@connectrpc/connect";
import { Health } from "../../internal/gen/grpc/health/v1/health_pb.js";
import { type HealthListener, HealthStatus, ServingStatus, healthRoutes } from "./health.js";
import { refusedWith } from "../../test/support/refusal.js";

const STORAGE = "hello.storage.v1.StorageService";

/** Counts live subscriptions, to see that Watch cleans up after itself. */
class CountingHealth extends HealthStatus {
  subscribers = 0;
  override onChange(listener: HealthListener): () => void {
    this.subscribers++;
    const unsubscribe = super.onChange(listener);
    return () => {
      this.subscribers--;
      unsubscribe();
    };
  }
}

function setup() {
  const health = new CountingHealth();
  health.set("", ServingStatus.SERVING);
  health.set(STORAGE, ServingStatus.SERVING);
  const client = createClient(Health, createRouterTransport(healthRoutes(health)));
  return { health, client };
}

async function until(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !condition(); i++) await new Promise((resolve) => setTimeout(resolve, 5));
  expect(condition(), "condition never held").to.equal(true);
}

describe("HealthStatus", () => {
  it("knows nothing until told", () => {
    expect(new HealthStatus().get("")).to.equal(undefined);
  });

  it("tells listeners about changes only", () => {
    const health = new HealthStatus();
    const heard: Array<[string, ServingStatus]> = [];
    const unsubscribe = health.onChange((service, status) => heard.push([service, status]));
    health.set(STORAGE, ServingStatus.SERVING);
    health.set(STORAGE, ServingStatus.SERVING);
    health.set(STORAGE, ServingStatus.NOT_SERVING);
    unsubscribe();
    health.set(STORAGE, ServingStatus.SERVING);
    expect(heard).to.deep.equal([
      [STORAGE, ServingStatus.SERVING],
      [STORAGE, ServingStatus.NOT_SERVING],
    ]);
  });

  it("shutdown() marks everything NOT_SERVING and ignores later updates", () => {
    const health = new HealthStatus();
    health.set("", ServingStatus.SERVING);
    health.set(STORAGE, ServingStatus.SERVING);
    health.shutdown();
    expect([...health.entries()]).to.deep.equal([
      ["", ServingStatus.NOT_SERVING],
      [STORAGE, ServingStatus.NOT_SERVING],
    ]);
    expect(health.stopped.aborted).to.equal(true);
    health.set(STORAGE, ServingStatus.SERVING);
    health.set("late.Service", ServingStatus.SERVING);
    expect(health.get(STORAGE)).to.equal(ServingStatus.NOT_SERVING);
    expect(health.get("late.Service")).to.equal(undefined);
  });
});

describe("healthRoutes", () => {
  it("Check reports a service's status and the overall one", async () => {
    const { health, client } = setup();
    health.set(STORAGE, ServingStatus.NOT_SERVING);
    expect((await client.check({ service: STORAGE })).status).to.equal(ServingStatus.NOT_SERVING);
    expect((await client.check({ service: "" })).status).to.equal(ServingStatus.SERVING);
  });

  it("Check looks again (refreshWith) before it answers NOT_SERVING, and not before SERVING", async () => {
    const { health, client } = setup();
    let looks = 0;
    health.refreshWith(async () => {
      looks++;
      health.set("", ServingStatus.SERVING); // the look finds the peers back
    });
    expect((await client.check({ service: "" })).status).to.equal(ServingStatus.SERVING);
    expect(looks).to.equal(0);
    health.set("", ServingStatus.NOT_SERVING);
    expect((await client.check({ service: "" })).status).to.equal(ServingStatus.SERVING);
    expect(looks).to.equal(1);
    health.shutdown(); // stopping: no look can bring it back
    expect((await client.check({ service: "" })).status).to.equal(ServingStatus.NOT_SERVING);
    expect(looks).to.equal(1);
  });

  it("Check answers NOT_FOUND for an unknown service", async () => {
    const { client } = setup();
    const error = await refusedWith(client.check({ service: "hello.nope.v1.Nope" }));
    expect(error.code).to.equal(Code.NotFound);
    expect(error.rawMessage).to.equal('unknown service: "hello.nope.v1.Nope"');
  });

  it("List reports every service", async () => {
    const { client } = setup();
    const { statuses } = await client.list({});
    expect(Object.fromEntries(Object.entries(statuses).map(([name, s]) => [name, s.status]))).to.deep.equal({
      "": ServingStatus.SERVING,
      [STORAGE]: ServingStatus.SERVING,
    });
  });

  it("Watch sends the current status, then each change, until the client leaves", async () => {
    const { health, client } = setup();
    const abort = new AbortController();
    const seen: ServingStatus[] = [];
    const watching = refusedWith((async () => {
      for await (const { status } of client.watch({ service: STORAGE }, { signal: abort.signal })) {
        seen.push(status);
        if (seen.length === 1) health.set(STORAGE, ServingStatus.NOT_SERVING);
        if (seen.length === 2) health.set(STORAGE, ServingStatus.SERVING);
        // Leave only once the handler is waiting for the next change, not parked at a
        // yield (where the transport would end it anyway).
        if (seen.length === 3) setTimeout(() => abort.abort(), 20);
      }
    })());

    expect((await watching).code).to.equal(Code.Canceled);
    expect(seen).to.deep.equal([ServingStatus.SERVING, ServingStatus.NOT_SERVING, ServingStatus.SERVING]);
    // The handler unsubscribed from the health status when the client went away.
    await until(() => health.subscribers === 0);
  });

  it("Watch of an unknown service says SERVICE_UNKNOWN and stays open for it to appear", async () => {
    const { health, client } = setup();
    const abort = new AbortController();
    const seen: ServingStatus[] = [];
    const watching = refusedWith((async () => {
      for await (const { status } of client.watch({ service: "hello.later.v1.Later" }, { signal: abort.signal })) {
        seen.push(status);
        if (seen.length === 1) health.set("hello.later.v1.Later", ServingStatus.SERVING);
        if (seen.length === 2) abort.abort();
      }
    })());
    expect((await watching).code).to.equal(Code.Canceled);
    expect(seen).to.deep.equal([ServingStatus.SERVICE_UNKNOWN, ServingStatus.SERVING]);
  });

  it("Watch ends after sending NOT_SERVING on shutdown, so graceful stop is not held up", async () => {
    const { health, client } = setup();
    const seen: Array<[string, ServingStatus]> = [];
    const watch = async (service: string) => {
      for await (const { status } of client.watch({ service })) {
        seen.push([service, status]);
        if (seen.length === 2) health.shutdown();
      }
    };
    // Both streams end normally: the known service's after NOT_SERVING, the unknown
    // one's (whose status does not change) straight away.
    const unknown = watch("hello.nope.v1.Nope");
    await until(() => seen.length === 1);
    await Promise.all([watch(STORAGE), unknown]);
    expect(seen).to.deep.equal([
      ["hello.nope.v1.Nope", ServingStatus.SERVICE_UNKNOWN],
      [STORAGE, ServingStatus.SERVING],
      [STORAGE, ServingStatus.NOT_SERVING],
    ]);
    await until(() => health.subscribers === 0);
  });

  it("Watch ends on shutdown even when shutdown changes no status", async () => {
    const health = new CountingHealth(); // nothing set, so shutdown() notifies no one
    const client = createClient(Health, createRouterTransport(healthRoutes(health)));
    const seen: ServingStatus[] = [];
    for await (const { status } of client.watch({ service: STORAGE })) {
      seen.push(status);
      setTimeout(() => health.shutdown(), 20); // once the handler is waiting for a change
    }
    expect(seen).to.deep.equal([ServingStatus.SERVICE_UNKNOWN]);
    await until(() => health.subscribers === 0);
  });

  it("Watch started after shutdown sends the status once and ends", async () => {
    const { health, client } = setup();
    health.shutdown();
    const seen: ServingStatus[] = [];
    for await (const { status } of client.watch({ service: "" })) seen.push(status);
    expect(seen).to.deep.equal([ServingStatus.NOT_SERVING]);
  });
});
