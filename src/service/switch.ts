/**
 * The provisioning switch (docs/spec/idprov-coap-v1.md §4 `disabled`): whether `/idprov/request` is
 * served. Held in memory for the hot path and persisted by the admin service; the composition root
 * hands one to both services, so the admin side turns it and the provisioning side reads it.
 */

/** The switch's state. */
export interface SwitchState {
  enabled: boolean;
  reason?: string;
}

export class ProvisioningSwitch {
  private s: SwitchState = { enabled: true };

  /** The current state (a copy). */
  get state(): SwitchState {
    return { ...this.s };
  }

  get enabled(): boolean {
    return this.s.enabled;
  }

  /** Turn it (the admin service persists it first). */
  set(s: SwitchState): void {
    this.s = { ...s };
  }
}
