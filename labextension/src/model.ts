/**
 * State of the audit trail panel: the signed-in user, the filtered and paged
 * trace list, and the window of events of the trace being looked at (pages
 * loaded as the reviewer scrolls, at most `MAX_WINDOW_EVENTS` kept, new
 * events appended live). Views re-render on `stateChanged`. What a user may
 * see is decided by the server; the model only asks.
 */
import { ServerConnection } from '@jupyterlab/services';
import { VDomModel } from '@jupyterlab/ui-components';
import { ISignal, Signal } from '@lumino/signaling';

import { AuditAPIError, requestAPI } from './request';
import type { ISessionEnd, SessionWatch } from './session';
import type {
  IIntegrity,
  IMe,
  ITraceDetail,
  ITraceEvent,
  ITraceFilter,
  ITraceIntegrity,
  ITraceList,
  ITraceSummary
} from './tokens';
import { readableEvent, traceList } from './normalize';
import type { EventPage } from './query';
import { MAX_TRACE_PAGE, traceListPath, tracePath } from './query';
import { buildSteps, lastCoveredSeq } from './steps';
import type { Step } from './steps';

/** Default number of traces per page of the list. */
export const DEFAULT_TRACE_LIMIT = 50;
/** Default number of events per page of a trace. */
export const DEFAULT_EVENT_PAGE = 500;
/** Most events of one trace kept loaded (and rendered) at once. */
export const MAX_WINDOW_EVENTS = 2000;

/** The loaded part of one trace: a contiguous run of its events. */
export interface ITraceWindow {
  trace: ITraceSummary;
  /** In `seq` order, folded as the server folded them. */
  events: ITraceEvent[];
  /** Cursor for the events after the window; null when it reaches the end. */
  nextAfterSeq: number | null;
  /** Cursor for the events before the window; null when it starts at the first. */
  prevBeforeSeq: number | null;
  /** Events in the whole trace (unfolded). */
  total: number | null;
  integrity: ITraceIntegrity | null;
}

type Result<T> = { ok: true; value: T } | { ok: false; error: AuditAPIError };

export class AuditTrailModel extends VDomModel {
  constructor(options: AuditTrailModel.IOptions = {}) {
    super();
    this._serverSettings =
      options.serverSettings ?? ServerConnection.makeSettings();
    this._traceLimit = options.traceLimit ?? DEFAULT_TRACE_LIMIT;
    this._session = options.session ?? null;
    this._session?.changed.connect(this._onSessionChanged, this);
    this._session?.userChanged.connect(this._onUserChanged, this);
  }

  /**
   * Emits when the model dropped what it showed of one user (their session
   * ended, or another user signed in): views and models holding that user's
   * data drop it too.
   */
  get userForgotten(): ISignal<this, void> {
    return this._userForgotten;
  }

  /**
   * Counts the users the model forgot: views key state they keep of their
   * own (a search box's text) on it, so it goes with the user.
   */
  get userGeneration(): number {
    return this._userGeneration;
  }

  /** The sign-in session this model reports to, if any. */
  get session(): SessionWatch | null {
    return this._session;
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
    this._session?.userChanged.disconnect(this._onUserChanged, this);
    Signal.clearData(this);
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

  /** The loaded traces, newest first. */
  get traces(): ITraceSummary[] | null {
    return this._traces;
  }

  /** Whether the server has more traces for the filter. */
  get hasMoreTraces(): boolean {
    return this._tracesNext !== null;
  }

  /** Why the traces could not be loaded, if they could not. */
  get tracesError(): AuditAPIError | null {
    return this._tracesError;
  }

  /**
   * The whole trail's verification: a failure reported by either the list
   * or `me` wins over the other's success (the newer check may not have run).
   */
  get trailIntegrity(): IIntegrity | null {
    const reports = [this._trailIntegrity, this._me?.trail?.integrity].filter(
      (i): i is IIntegrity => !!i
    );
    return reports.find(i => !i.ok) ?? reports[0] ?? null;
  }

  /** The list's filters. */
  get filter(): ITraceFilter {
    return this._filter;
  }

  /** Replace the list's filters and reload its first page. */
  setFilter(filter: ITraceFilter): Promise<void> {
    this._filter = { ...filter };
    this._traces = null;
    this._tracesNext = null;
    this.stateChanged.emit();
    return this._loadTraces();
  }

  /** Load the next page of traces after the loaded ones. */
  async loadMoreTraces(): Promise<void> {
    if (this._tracesNext === null || this._loadingMore) {
      return;
    }
    this._loadingMore = true;
    const generation = this._tracesGeneration;
    try {
      const result = await this._request<ITraceList>(
        traceListPath(this._filter, this._traceLimit, this._tracesNext)
      );
      if (generation !== this._tracesGeneration) {
        return;
      }
      if (result.ok) {
        const known = new Set((this._traces ?? []).map(t => t.trace_id));
        const more = traceList(result.value).filter(
          t => !known.has(t.trace_id)
        );
        this._traces = [...(this._traces ?? []), ...more];
        this._tracesNext = result.value.next ?? null;
        this._trailIntegrity = result.value.integrity ?? this._trailIntegrity;
      } else {
        this._tracesError = result.error;
      }
    } finally {
      this._loadingMore = false;
      this.stateChanged.emit();
    }
  }

  /** The trace whose timeline is shown, or null for the list. */
  get selectedTraceId(): string | null {
    return this._selectedTraceId;
  }

  /** The loaded window of the selected trace. */
  get detail(): ITraceWindow | null {
    return this._detail;
  }

  /** The window's events grouped into cells and other steps, in kernel order. */
  get steps(): Step[] {
    if (this._stepsOf !== this._detail?.events) {
      this._stepsOf = this._detail?.events ?? null;
      this._steps = buildSteps(this._stepsOf ?? []);
    }
    return this._steps;
  }

  /** Why the selected trace could not be loaded, if it could not. */
  get detailError(): AuditAPIError | null {
    return this._detailError;
  }

  /** Whether the events of the selected trace have arrived. */
  get detailLoaded(): boolean {
    return this._detailLoaded;
  }

  /** The record shown in the detail pane, if one is. */
  get selectedEvent(): ITraceEvent | null {
    return this._selectedEvent;
  }

  /** The cell (msg_id) shown in the detail pane, if one is. */
  get selectedCell(): string | null {
    return this._selectedCell;
  }

  /** Show one record (or, with `msgId`, a whole cell) in the detail pane; null closes it. */
  select(event: ITraceEvent | null, msgId: string | null = null): void {
    this._selectedEvent = event;
    this._selectedCell = event === null ? null : msgId;
    this.stateChanged.emit();
  }

  /** The unfolded records of folded groups that were expanded, by the group's `seq`. */
  get expanded(): ReadonlyMap<number, ITraceEvent[] | AuditAPIError | null> {
    return this._expanded;
  }

  /** Whether a request is in flight. */
  get loading(): boolean {
    return this._pending > 0;
  }

  /** How many traces per page. */
  get traceLimit(): number {
    return this._traceLimit;
  }
  set traceLimit(limit: number) {
    if (limit !== this._traceLimit && limit > 0) {
      this._traceLimit = limit;
      void this.setFilter(this._filter);
    }
  }

  /** How many events per page of a trace. */
  get eventPageSize(): number {
    return this._eventPageSize;
  }
  set eventPageSize(size: number) {
    if (size > 0) {
      this._eventPageSize = size;
    }
  }

  /** Whether consecutive identical operations are folded into one row. */
  get fold(): boolean {
    return this._fold;
  }
  set fold(fold: boolean) {
    if (fold !== this._fold) {
      this._fold = fold;
      if (this._selectedTraceId !== null) {
        void this.openTrace(this._selectedTraceId);
      }
    }
  }

  /**
   * Reload the user and the trace list, and bring the open trace up to date:
   * new events are appended when its window reaches the end (the scroll
   * position stays where the reviewer left it). Never rejects: failures are
   * kept as `*Error` for the view to show.
   */
  async refresh(): Promise<void> {
    const jobs: Promise<void>[] = [this._loadMe(), this._loadTraces(true)];
    if (this._selectedTraceId !== null) {
      jobs.push(
        this._detailLoaded
          ? this._loadLive(this._selectedTraceId)
          : this._loadPage(this._selectedTraceId, { at: 'first' }, 'replace')
      );
    }
    await Promise.all(jobs);
  }

  /** Show the timeline of one trace, from its first page (or its last). */
  async openTrace(
    traceId: string,
    at: 'first' | 'last' = 'first'
  ): Promise<void> {
    this._selectedTraceId = traceId;
    // Keep the summary we already have so the header shows at once.
    const summary = this._traces?.find(t => t.trace_id === traceId) ?? null;
    this._detail = summary
      ? {
          trace: summary,
          events: [],
          nextAfterSeq: null,
          prevBeforeSeq: null,
          total: null,
          integrity: null
        }
      : null;
    this._detailLoaded = false;
    this._detailError = null;
    this._selectedEvent = null;
    this._selectedCell = null;
    this._expanded = new Map();
    this.stateChanged.emit();
    await this._loadPage(traceId, { at }, 'replace');
  }

  /** Load the page after the window (scrolling down). */
  async loadLater(): Promise<void> {
    await this._pageSettled();
    const next = this._detail?.nextAfterSeq;
    if (this._selectedTraceId === null || next === null || next === undefined) {
      return;
    }
    return this._loadPage(
      this._selectedTraceId,
      { at: 'after', seq: next },
      'append'
    );
  }

  /** Load the page before the window (scrolling up). */
  async loadEarlier(): Promise<void> {
    await this._pageSettled();
    const prev = this._detail?.prevBeforeSeq;
    if (this._selectedTraceId === null || prev === null || prev === undefined) {
      return;
    }
    return this._loadPage(
      this._selectedTraceId,
      { at: 'before', seq: prev },
      'prepend'
    );
  }

  /**
   * Wait for the page being loaded, if one is: a scroll that asks while a
   * page (or a live update) is on its way is served after it, from the
   * window it left, instead of being dropped.
   */
  private async _pageSettled(): Promise<void> {
    while (this._pagePromise !== null) {
      await this._pagePromise.catch(() => undefined);
    }
  }

  /** Jump to the first or the last page of the open trace. */
  jumpTo(at: 'first' | 'last'): Promise<void> {
    if (this._selectedTraceId === null) {
      return Promise.resolve();
    }
    return this._loadPage(this._selectedTraceId, { at }, 'replace');
  }

  /** Whether a page of the open trace is being loaded. */
  get pageLoading(): boolean {
    return this._pagePromise !== null;
  }

  /** Load every record a folded row stands for; again to fold it back. */
  async toggleRepeat(event: ITraceEvent): Promise<void> {
    const traceId = this._selectedTraceId;
    if (traceId === null || !event.repeat || !event.msg_id) {
      return;
    }
    if (this._expanded.has(event.seq)) {
      this._expanded = new Map(this._expanded);
      this._expanded.delete(event.seq);
      this.stateChanged.emit();
      return;
    }
    this._expanded = new Map(this._expanded).set(event.seq, null);
    this.stateChanged.emit();
    const { first_seq, last_seq } = event.repeat;
    const found: ITraceEvent[] = [];
    let page: EventPage = { at: 'after', seq: first_seq - 1 };
    let error: AuditAPIError | null = null;
    // The cell's records page by page until the group's last one.
    for (;;) {
      const result: Result<ITraceDetail> = await this._request<ITraceDetail>(
        tracePath(traceId, page, {
          limit: this._eventPageSize,
          fold: false,
          msgId: event.msg_id
        })
      );
      if (!result.ok) {
        error = result.error;
        break;
      }
      const events = Array.isArray(result.value.events)
        ? result.value.events.map(readableEvent)
        : [];
      found.push(
        ...events.filter(
          e => e.seq >= first_seq && e.seq <= last_seq && e.kind === event.kind
        )
      );
      const next: number | null = result.value.next_after_seq ?? null;
      if (next === null || next >= last_seq || events.length === 0) {
        break;
      }
      page = { at: 'after', seq: next };
    }
    if (!this._expanded.has(event.seq) || traceId !== this._selectedTraceId) {
      return; // folded back, or the reviewer moved on
    }
    this._expanded = new Map(this._expanded).set(event.seq, error ?? found);
    this.stateChanged.emit();
  }

  /** Go back to the trace list. */
  closeTrace(): void {
    this._selectedTraceId = null;
    this._detail = null;
    this._detailError = null;
    this._detailLoaded = false;
    this._selectedEvent = null;
    this._selectedCell = null;
    this._expanded = new Map();
    this.stateChanged.emit();
  }

  private async _loadMe(): Promise<void> {
    const result = await this._request<IMe>('me');
    if (result.ok) {
      const me = result.value;
      const changed = this._username !== null && this._username !== me.username;
      if (changed) {
        this._forgetUser();
      }
      // may emit userChanged, which forgets again (it changes nothing then)
      this._session?.signedIn(me);
      this._username = me.username;
      this._me = me;
      this._meError = null;
      if (changed) {
        await this._loadTraces(); // the list refresh() asked for was dropped
      }
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

  private _onUserChanged(): void {
    this._forgetUser();
  }

  /**
   * Drop everything loaded for the user the page acted as: traces, the open
   * trace, selection, expanded repeats and filters; answers still on their
   * way are discarded (their generation is gone).
   */
  private _forgetUser(): void {
    this._tracesGeneration++;
    this._detailGeneration++;
    this._me = null;
    this._username = null;
    this._meError = null;
    this._filter = {};
    this._traces = null;
    this._tracesNext = null;
    this._trailIntegrity = null;
    this._tracesError = null;
    this._loadingMore = false;
    this._selectedTraceId = null;
    this._detail = null;
    this._detailLoaded = false;
    this._detailError = null;
    this._selectedEvent = null;
    this._selectedCell = null;
    this._expanded = new Map();
    this._userGeneration++;
    this._userForgotten.emit();
    this.stateChanged.emit();
  }

  /**
   * Load the list's first page; on a live refresh, as many traces as are
   * shown (up to a server page), so "load more" pages are not lost.
   */
  private async _loadTraces(live = false): Promise<void> {
    if (live && this._loadingMore) {
      return;
    }
    const generation = ++this._tracesGeneration;
    const shown = this._traces?.length ?? 0;
    const limit =
      live && shown > this._traceLimit
        ? Math.min(shown, MAX_TRACE_PAGE)
        : this._traceLimit;
    const result = await this._request<ITraceList>(
      traceListPath(this._filter, limit)
    );
    if (generation !== this._tracesGeneration) {
      this.stateChanged.emit(); // Superseded: only the loading flag changed.
      return;
    }
    if (result.ok) {
      this._traces = traceList(result.value);
      this._tracesNext = result.value.next ?? null;
      this._trailIntegrity = result.value.integrity ?? null;
      this._tracesError = null;
    } else {
      this._tracesError = result.error;
    }
    this.stateChanged.emit();
  }

  /** New events of the open trace, appended when its window reaches the end. */
  private async _loadLive(traceId: string): Promise<void> {
    const detail = this._detail;
    if (detail === null || this._pagePromise !== null) {
      return;
    }
    if (detail.nextAfterSeq !== null) {
      // Not at the end: only the header (counts, integrity) may change.
      await this._loadPage(
        traceId,
        { at: 'after', seq: detail.nextAfterSeq - 1 },
        'header'
      );
      return;
    }
    const last = lastCoveredSeq(detail.events);
    await this._loadPage(
      traceId,
      last === null ? { at: 'first' } : { at: 'after', seq: last },
      'append'
    );
  }

  private async _loadPage(
    traceId: string,
    page: EventPage,
    mode: 'replace' | 'append' | 'prepend' | 'header'
  ): Promise<void> {
    if (mode === 'replace') {
      this._detailGeneration++;
    } else if (this._pagePromise !== null) {
      return; // a live update while a page is on its way: the next poll does it
    }
    const generation = this._detailGeneration;
    const request = this._request<ITraceDetail>(
      tracePath(traceId, page, {
        limit: mode === 'header' ? 1 : this._eventPageSize,
        fold: this._fold
      })
    );
    const done = request.then(() => undefined);
    this._pagePromise = done;
    this.stateChanged.emit();
    let result: Result<ITraceDetail>;
    try {
      result = await request;
    } finally {
      if (this._pagePromise === done) {
        this._pagePromise = null;
      }
    }
    if (
      generation !== this._detailGeneration ||
      traceId !== this._selectedTraceId
    ) {
      // The user moved on, or a newer request superseded this one.
      this.stateChanged.emit();
      return;
    }
    if (!result.ok) {
      this._detailError = result.error;
      if (result.error.status === 401 || result.error.status === 403) {
        // Not (or no longer) this user's to see: drop what was shown of it.
        this._detail = null;
        this._detailLoaded = false;
        this._selectedEvent = null;
        this._selectedCell = null;
        this._expanded = new Map();
      }
      this.stateChanged.emit();
      return;
    }
    this._detailError = null;
    this._detailLoaded = true;
    this._detail = mergePage(this._detail, result.value, mode);
    this.stateChanged.emit();
  }

  private async _request<T>(endPoint: string): Promise<Result<T>> {
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
  private _eventPageSize = DEFAULT_EVENT_PAGE;
  private _fold = true;
  private _me: IMe | null = null;
  private _username: string | null = null;
  private _userGeneration = 0;
  private _userForgotten = new Signal<this, void>(this);
  private _meError: AuditAPIError | null = null;
  private _filter: ITraceFilter = {};
  private _traces: ITraceSummary[] | null = null;
  private _tracesNext: string | null = null;
  private _trailIntegrity: IIntegrity | null = null;
  private _tracesError: AuditAPIError | null = null;
  private _tracesGeneration = 0;
  private _loadingMore = false;
  private _selectedTraceId: string | null = null;
  private _detail: ITraceWindow | null = null;
  private _detailLoaded = false;
  private _detailError: AuditAPIError | null = null;
  private _detailGeneration = 0;
  private _pagePromise: Promise<void> | null = null;
  private _steps: Step[] = [];
  private _stepsOf: ITraceEvent[] | null = null;
  private _selectedEvent: ITraceEvent | null = null;
  private _selectedCell: string | null = null;
  private _expanded = new Map<number, ITraceEvent[] | AuditAPIError | null>();
  private _pending = 0;
}

/**
 * The window after a page arrived: replaced, or the page added at one end
 * and the other end trimmed to `MAX_WINDOW_EVENTS` (its cursor moved so the
 * trimmed events load again when scrolled back to). `header` only takes the
 * summary, total and integrity.
 */
export function mergePage(
  current: ITraceWindow | null,
  page: ITraceDetail,
  mode: 'replace' | 'append' | 'prepend' | 'header',
  maxEvents = MAX_WINDOW_EVENTS
): ITraceWindow {
  const incoming = Array.isArray(page.events)
    ? page.events.map(readableEvent).sort((a, b) => a.seq - b.seq)
    : [];
  const header = {
    trace: page.trace ?? current?.trace,
    total: page.total ?? current?.total ?? null,
    integrity: page.integrity ?? current?.integrity ?? null
  };
  // Today's server sends neither cursor: its one answer is the whole trace.
  const next = page.next_after_seq ?? null;
  const prev = page.prev_before_seq ?? null;
  if (current === null || mode === 'replace') {
    return {
      ...header,
      events: incoming,
      nextAfterSeq: next,
      prevBeforeSeq: prev
    };
  }
  if (mode === 'header') {
    return { ...current, ...header };
  }
  const known = new Set(current.events.map(e => e.seq));
  const fresh = incoming.filter(e => !known.has(e.seq));
  if (mode === 'append') {
    let events = [...current.events, ...fresh];
    let prevBeforeSeq = current.prevBeforeSeq;
    if (events.length > maxEvents) {
      events = events.slice(events.length - maxEvents);
      prevBeforeSeq = events[0].seq;
    }
    // A live refresh at the end that found nothing keeps the end.
    return { ...header, events, nextAfterSeq: next, prevBeforeSeq };
  }
  let events = [...fresh, ...current.events];
  let nextAfterSeq = current.nextAfterSeq;
  if (events.length > maxEvents) {
    events = events.slice(0, maxEvents);
    nextAfterSeq = lastCoveredSeq(events);
  }
  return { ...header, events, nextAfterSeq, prevBeforeSeq: prev };
}

export namespace AuditTrailModel {
  export interface IOptions {
    /** Server connection settings; the app's by default. */
    serverSettings?: ServerConnection.ISettings;
    /** How many traces per page. */
    traceLimit?: number;
    /** Told of the panel's 401s; says when the sign-in session has ended. */
    session?: SessionWatch;
  }
}
