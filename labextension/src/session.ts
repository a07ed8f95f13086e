/**
 * Notices that the sign-in session behind this JupyterLab has ended (signed
 * out elsewhere, expired, the server restarted) and says so once, with where
 * to sign in again and come back to this page.
 *
 * It learns of the end from a 401 of the audit API (the panel's own requests,
 * and `check()`), which it asks when the session's expiry time comes (from
 * `GET me`'s `session_expires_at`), when a kernel connection is lost (the
 * server closes kernel websockets when their session ends) and when the page
 * is shown again. Only a 401 after a successful `GET me` counts: a server
 * that never signed this page in is not a session that ended.
 */
import type { Dialog, WidgetTracker } from '@jupyterlab/apputils';
import { URLExt } from '@jupyterlab/coreutils';
import type { Kernel, ServerConnection } from '@jupyterlab/services';
import { ISignal, Signal } from '@lumino/signaling';

import { AuditAPIError, requestAPI } from './request';
import type { IMe } from './tokens';

/** A sign-in session that has ended. */
export interface ISessionEnd {
  /** `session_expired`, `session_ended`, `not_signed_in`, … (the server's). */
  reason: string;
  /** Where to sign in again, coming back to this page. */
  signInUrl: string;
}

/** The page's path, query and fragment (what `next=` brings back). */
export interface IHere {
  pathname: string;
  search: string;
  hash: string;
}

/** The sign-in URL that comes back to `here` (a path of this server). */
export function signInUrl(loginUrl: string, here: IHere): string {
  const next = here.pathname + here.search + here.hash;
  const sep = loginUrl.includes('?') ? '&' : '?';
  return `${loginUrl}${sep}next=${encodeURIComponent(next)}`;
}

/** What JupyterLab says of a kernel it can no longer ask the server about. */
export const KERNEL_DIED = 'Kernel died unexpectedly';

/** Most a timer can wait (setTimeout overflows past 2^31 - 1 ms). */
const MAX_DELAY = 2 ** 31 - 1;

export class SessionWatch {
  constructor(options: SessionWatch.IOptions) {
    this._serverSettings = options.serverSettings;
    this._here = options.here ?? (() => window.location);
  }

  /** The session's end, once noticed; null while signed in. */
  get ended(): ISessionEnd | null {
    return this._ended;
  }

  /** Emits when the session is noticed to have ended, or is back. */
  get changed(): ISignal<this, ISessionEnd | null> {
    return this._changed;
  }

  /**
   * Emits when what the page showed may belong to someone else: the session
   * ended, or `GET me` names another user than the one signed in before.
   * Whatever holds a user's data drops it.
   */
  get userChanged(): ISignal<this, void> {
    return this._userChanged;
  }

  /** `GET me` answered: signed in (again), and when that ends. */
  signedIn(me: IMe): void {
    this._signedIn = true;
    const before = this._username;
    this._username = me.username;
    if (before !== null && before !== me.username) {
      this._userChanged.emit();
    }
    this._schedule(me.session_expires_at ?? null);
    if (this._ended !== null) {
      this._ended = null;
      this._changed.emit(null);
    }
  }

  /** A request of the audit API failed: a 401 after signing in ends it. */
  failed(error: AuditAPIError): void {
    if (error.signIn === null || !this._signedIn || this._ended !== null) {
      return;
    }
    const loginUrl =
      error.signIn.loginUrl ??
      URLExt.join(
        URLExt.parse(this._serverSettings.baseUrl).pathname ?? '/',
        'login'
      );
    // past the session's expiry the browser has dropped its cookie: the
    // server sees nobody, but this page knows the session expired
    let reason = error.signIn.reason;
    if (
      reason === 'not_signed_in' &&
      this._expiresAt !== null &&
      Date.now() >= this._expiresAt
    ) {
      reason = 'session_expired';
    }
    this._ended = {
      reason,
      signInUrl: signInUrl(loginUrl, this._here())
    };
    this._clearTimer();
    this._changed.emit(this._ended);
    this._userChanged.emit();
  }

  /** Ask the server whether the session still holds. Never rejects. */
  async check(): Promise<void> {
    try {
      this.signedIn(await requestAPI<IMe>('me', {}, this._serverSettings));
    } catch (reason) {
      if (reason instanceof AuditAPIError) {
        this.failed(reason);
      }
    }
  }

  /**
   * Check the session whenever a kernel connection of `kernels` is lost
   * (JupyterLab's kernel manager gives no signal for its connections, so its
   * `connectTo` is wrapped).
   */
  watchKernels(kernels: Kernel.IManager): void {
    const connectTo = kernels.connectTo.bind(kernels);
    kernels.connectTo = (options: Kernel.IKernelConnection.IOptions) => {
      const connection = connectTo(options);
      connection.connectionStatusChanged.connect((_, status) => {
        if (status !== 'connected') {
          void this.check();
        }
      });
      return connection;
    };
  }

  /**
   * JupyterLab says "Kernel died unexpectedly" when it cannot ask the server
   * about a kernel whose websocket closed, as when the session ended: the
   * kernel is alive. Such a dialog is dismissed once the session is known to
   * have ended (the notification and the panel say what happened).
   */
  watchDialogs(tracker: WidgetTracker<Dialog<unknown>>): void {
    tracker.widgetAdded.connect(async (_, dialog) => {
      await dialog.ready; // its title and body are rendered by then
      if (!(dialog.node.textContent ?? '').includes(KERNEL_DIED)) {
        return;
      }
      await this.check();
      if (this._ended !== null && !dialog.isDisposed) {
        dialog.reject();
      }
    });
  }

  dispose(): void {
    this._clearTimer();
    Signal.clearData(this);
  }

  private _schedule(expiresAt: string | null): void {
    this._clearTimer();
    const at = expiresAt === null ? NaN : Date.parse(expiresAt);
    this._expiresAt = Number.isNaN(at) ? null : at;
    if (Number.isNaN(at)) {
      return;
    }
    // a moment after the session's end: the server refuses it by then
    const delay = Math.min(Math.max(at - Date.now(), 0) + 1000, MAX_DELAY);
    this._timer = setTimeout(() => void this.check(), delay);
  }

  private _clearTimer(): void {
    if (this._timer !== null) {
      clearTimeout(this._timer);
      this._timer = null;
    }
  }

  private _username: string | null = null;
  private _userChanged = new Signal<this, void>(this);
  private _serverSettings: ServerConnection.ISettings;
  private _here: () => IHere;
  private _signedIn = false;
  private _ended: ISessionEnd | null = null;
  private _timer: ReturnType<typeof setTimeout> | null = null;
  private _expiresAt: number | null = null;
  private _changed = new Signal<this, ISessionEnd | null>(this);
}

export namespace SessionWatch {
  export interface IOptions {
    /** Server connection settings. */
    serverSettings: ServerConnection.ISettings;
    /** The page's location (`window.location` by default). */
    here?: () => IHere;
  }
}
