import type { KubeConfig } from "@kubernetes/client-node";
import { afterAll, afterEach, expect } from "vitest";
import type { AgentIdentity } from "../../src/api/types.ts";
import type { RunningEmulator } from "../../src/emulator/index.ts";
import { createKubeClient, type KubeClient } from "../../src/kube/client.ts";
import type { ManagerOptions, RunningManager } from "../../src/manager/manager.ts";
import { identityPath } from "../../src/operator/reconciler.ts";
import { type ControlPlaneFixture, useControlPlane } from "../support/controlplane.ts";
import { startedForFile } from "../support/per-file.ts";
import { ensureIdentityEditorRole, namespaceUserClient } from "./namespace-user.ts";
import { emulatorAdmin, LogCapture, startTestEmulator, startTestManager } from "./operator-fixture.ts";
import { BLUEPRINT, ensureCrd, TENANT } from "./operator-support.ts";

/**
 * The set-up the operator's integration tests share (not a test file): the shared control plane with a
 * fresh namespace per test, the CRDs, one emulator per file, and managers and namespace users that are
 * stopped and closed after each test, so a test file says only what it tries.
 */

/** A JWT (header.payload.), as it would appear if a token leaked into a log, a status or an Event. */
export const JWT = /eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\./;

export interface OperatorHarnessOptions {
  /** Start of each per-test namespace's name. */
  namespacePrefix: string;
  /** What the managers' logs (level trace) must never hold, checked after each test. */
  logsMustNotHold?: Array<RegExp | string>;
}

export interface OperatorHarness {
  readonly cp: ControlPlaneFixture;
  /** Cluster-admin: the platform team, for blueprints and for reading back what the operator wrote. */
  readonly admin: KubeClient;
  /** The Entra and Graph emulator of this file (from beforeAll on). */
  readonly emu: RunningEmulator;
  /** The current test's manager logs. */
  readonly logs: LogCapture;
  /**
   * Starts a manager for the test's namespace (or `where.namespace`, as cluster-admin or `where.kubeConfig`);
   * stopped after the test unless the test stopped it.
   */
  manager(
    extra?: Partial<ManagerOptions>,
    where?: { kubeConfig?: KubeConfig; namespace?: string },
  ): Promise<RunningManager>;
  /**
   * A namespace user's client (test/integration/namespace-user.ts: edit plus agentid-identity-editor in
   * `namespace` only, never cluster-admin), closed after the test.
   */
  namespaceUser(namespace?: string): Promise<KubeClient>;
  /** The test's AgentIdentity `name`, read as cluster-admin. */
  read(name: string): Promise<AgentIdentity | undefined>;
  /**
   * Writes a federated credential on BLUEPRINT that trusts `serviceAccount` of the test's namespace (as
   * issued by this control plane), as the platform team would by hand.
   */
  trustOnBlueprint(name: string, serviceAccount: string): Promise<void>;
  /** Polls `name` until `check` holds; on failure the last value shown is its conditions. */
  until(name: string, check: (i: AgentIdentity | undefined) => boolean, what: string): Promise<AgentIdentity>;
}

/** Registers the hooks of an operator test file; call once, at top level. */
export function useOperatorHarness(options: OperatorHarnessOptions): OperatorHarness {
  const cp = useControlPlane({ namespacePrefix: options.namespacePrefix });
  const admin = createKubeClient(cp.kubeConfig);
  const emu = startedForFile(
    "the emulator",
    async () => {
      await ensureCrd(cp.kubeConfig);
      return startTestEmulator(cp);
    },
    (started) => started.close(),
  );
  let logs = new LogCapture();
  const managers = new Set<RunningManager>();
  const users: KubeClient[] = [];
  let editorRole: Promise<void> | undefined;

  afterEach(async () => {
    await Promise.all([...managers].map((m) => m.stop()));
    managers.clear();
    for (const user of users.splice(0)) await user.close();
    // Whatever happened in the test, none of these reached the logs.
    for (const secret of options.logsMustNotHold ?? []) {
      if (typeof secret === "string") expect(logs.text()).not.toContain(secret);
      else expect(logs.text()).not.toMatch(secret);
    }
    logs = new LogCapture();
  });
  afterAll(async () => {
    await admin.close();
  });

  const read = (name: string) => admin.getOptional<AgentIdentity>(identityPath(cp.namespace, name));

  return {
    cp,
    admin,
    emu,
    get logs() {
      return logs;
    },
    async manager(extra = {}, where = {}) {
      const as = where.kubeConfig ? { ...cp, kubeConfig: where.kubeConfig } : cp;
      const started = await startTestManager(as, emu, where.namespace ?? cp.namespace, logs, extra);
      // A manager the test stops itself (to act while none runs) is not stopped a second time.
      const running: RunningManager = {
        ...started,
        async stop() {
          managers.delete(running);
          await started.stop();
        },
      };
      managers.add(running);
      return running;
    },
    async namespaceUser(namespace = cp.namespace) {
      // The chart's opt-in role for namespace users (create AgentIdentities, read their status, no more).
      editorRole ??= ensureIdentityEditorRole(admin);
      await editorRole;
      const user = await namespaceUserClient(admin, cp, namespace);
      users.push(user);
      return user;
    },
    read,
    async trustOnBlueprint(name, serviceAccount) {
      await emulatorAdmin(
        emu,
        "POST",
        `/_emulator/tenants/${TENANT}/applications/${BLUEPRINT}/federatedIdentityCredentials`,
        {
          name,
          issuer: cp.issuerUrl,
          subject: `system:serviceaccount:${cp.namespace}:${serviceAccount}`,
          audiences: ["api://AzureADTokenExchange"],
        },
      );
    },
    async until(name, check, what) {
      let identity: AgentIdentity | undefined;
      await expect
        .poll(
          async () => {
            identity = await read(name);
            return check(identity)
              ? true
              : (identity?.status?.conditions?.map(
                  (c) => `${c.type}=${c.status}/${c.reason}: ${c.message}`,
                ) ?? []);
          },
          { message: `${name}: ${what}` },
        )
        .toBe(true);
      if (!identity) throw new Error(`${name} disappeared`);
      return identity;
    },
  };
}
