/**
 * State of the audit trail panel: the signed-in user, the newest traces and
 * the timeline of the trace being looked at. Views re-render on `stateChanged`.
 */
import { ServerConnection } from '@jupyterlab/services';
import { VDomModel } from '@jupyterlab/ui-components';

import { AuditAPIError, requestAPI } from './request';
import type { ISessionEnd, SessionWatch } from './session';
import type { IMe, ITraceDetail, ITraceList, ITraceSummary } from './tokens';
import { timeline, traceList } from './normalize';

/** Default number of traces listed. */
export const DEFAULT_TRACE_LIMIT = 50;

export class AuditTrailModel extends VDomModel {
  constructor(options: AuditTrailModel.IOptions = {}) {
    super();
    this._serverSettings =
      options.serverSettings ?? ServerConnection.makeSettings();
    this._traceLimit = options.traceLimit ?? DEFAULT_TRACE_LIMIT;
    this._session = options.session ?? null;
    this._session?.changed.connect(this._onSessionChanged, this);
  }

  /** The sign-in session's end, once noticed: the view says sign in again. */
  get sessionEnd(): ISessionEnd | null {
    return this._session?.ended ?? null;
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._session?.changed.disconnect(this._onSessionChanged, this);
    super.dispose();
  }

  /** The server this model talks to. */
  get serverSettings(): ServerConnection.ISettings {
    return this._serverSettings;
  }

  /** The signed-in user, once loaded. */
  get me(): IMe | null {
    return this._me;
  }

  /** Why the user could not be loaded, if it could not. */
  get meError(): AuditAPIError | null {
    return this._meError;
  }

  /** The newest traces, newest first, once loaded. */
  get traces(): ITraceSummary[] | null {
    return this._traces;
  }

  /** Why the traces could not be loaded, if they could not. */
  get tracesError(): AuditAPIError | null {
    return this._tracesError;
  }

  /** The trace whose timeline is shown, or null for the list. */
  get selectedTraceId(): string | null {
    return this._selectedTraceId;
  }

  /** The selected trace with its events, once loaded. */
  get detail(): ITraceDetail | null {
    return this._detail;
  }

  /** Why the selected trace could not be loaded, if it could not. */
  get detailError(): AuditAPIError | null {
    return this._detailError;
  }

  /** Whether a request is in flight. */
  get loading(): boolean {
    return this._pending > 0;
  }

  /** How many traces to list. */
  get traceLimit(): number {
    return this._traceLimit;
  }
  set traceLimit(limit: number) {
    if (limit !== this._traceLimit && limit > 0) {
      this._traceLimit = limit;
      void this.refresh();
    }
  }

  /**
   * Reload the user and the trace list, and the timeline if one is open.
   * Never rejects: failures are kept as `*Error` for the view to show.
   */
  async refresh(): Promise<void> {
    const jobs: Promise<void>[] = [this._loadMe(), this._loadTraces()];
    if (this._selectedTraceId !== null) {
      jobs.push(this._loadDetail(this._selectedTraceId));
    }
    await Promise.all(jobs);
  }

  /** Show the timeline of one trace. */
  async openTrace(traceId: string): Promise<void> {
    this._selectedTraceId = traceId;
    // Keep the summary we already have so the header shows at once.
    const summary = this._traces?.find(t => t.trace_id === traceId) ?? null;
    this._detail = summary ? { trace: summary, events: [] } : null;
    this._detailLoaded = false;
    this._detailError = null;
    this.stateChanged.emit();
    await this._loadDetail(traceId);
  }

  /** Go back to the trace list. */
  closeTrace(): void {
    this._selectedTraceId = null;
    this._detail = null;
    this._detailError = null;
    this._detailLoaded = false;
    this.stateChanged.emit();
  }

  /** Whether the events of the selected trace have arrived. */
  get detailLoaded(): boolean {
    return this._detailLoaded;
  }

  private async _loadMe(): Promise<void> {
    const result = await this._request<IMe>('me');
    if (result.ok) {
      this._me = result.value;
      this._meError = null;
      this._session?.signedIn(result.value);
    } else {
      this._meError = result.error;
    }
    this.stateChanged.emit();
  }

  private _onSessionChanged(): void {
    if (this._session?.ended) {
      this._me = null; // the page no longer acts as that user
    }
    this.stateChanged.emit();
  }

  private async _loadTraces(): Promise<void> {
    const generation = ++this._tracesGeneration;
    const result = await this._request<ITraceList>(
      `traces?limit=${encodeURIComponent(String(this._traceLimit))}`
    );
    if (generation !== this._tracesGeneration) {
      this.stateChanged.emit(); // Superseded: only the loading flag changed.
      return;
    }
    if (result.ok) {
      this._traces = traceList(result.value);
      this._tracesError = null;
    } else {
      this._tracesError = result.error;
    }
    this.stateChanged.emit();
  }

  private async _loadDetail(traceId: string): Promise<void> {
    const generation = ++this._detailGeneration;
    const result = await this._request<ITraceDetail>(
      `traces/${encodeURIComponent(traceId)}`
    );
    if (
      generation !== this._detailGeneration ||
      traceId !== this._selectedTraceId
    ) {
      // The user moved on, or a newer request superseded this one.
      this.stateChanged.emit();
      return;
    }
    if (result.ok) {
      this._detail = timeline(result.value);
      this._detailLoaded = true;
      this._detailError = null;
    } else {
      this._detailError = result.error;
    }
    this.stateChanged.emit();
  }

  private async _request<T>(
    endPoint: string
  ): Promise<{ ok: true; value: T } | { ok: false; error: AuditAPIError }> {
    this._pending++;
    this.stateChanged.emit();
    try {
      const value = await requestAPI<T>(endPoint, {}, this._serverSettings);
      return { ok: true, value };
    } catch (reason) {
      const error =
        reason instanceof AuditAPIError
          ? reason
          : new AuditAPIError(
              0,
              'Unexpected error while talking to the server.'
            );
      if (!(reason instanceof AuditAPIError)) {
        console.error('jupyter-audit: request failed', reason);
      }
      this._session?.failed(error);
      return { ok: false, error };
    } finally {
      this._pending--;
    }
  }

  private _serverSettings: ServerConnection.ISettings;
  private _session: SessionWatch | null;
  private _traceLimit: number;
  private _me: IMe | null = null;
  private _meError: AuditAPIError | null = null;
  private _traces: ITraceSummary[] | null = null;
  private _tracesError: AuditAPIError | null = null;
  private _tracesGeneration = 0;
  private _selectedTraceId: string | null = null;
  private _detail: ITraceDetail | null = null;
  private _detailLoaded = false;
  private _detailError: AuditAPIError | null = null;
  private _detailGeneration = 0;
  private _pending = 0;
}

export namespace AuditTrailModel {
  export interface IOptions {
    /** Server connection settings; the app's by default. */
    serverSettings?: ServerConnection.ISettings;
    /** How many traces to list. */
    traceLimit?: number;
    /** Told of the panel's 401s; says when the sign-in session has ended. */
    session?: SessionWatch;
  }
}
