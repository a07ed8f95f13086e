/**
 * Whether a notebook path taken from a record may be opened. The path is what
 * a kernel reported, so a notebook user can make it anything: it is opened
 * only when it is a plain, relative `.ipynb` path inside the server's root.
 */
import { PathExt } from '@jupyterlab/coreutils';

import { revealText } from './reveal';

/**
 * `null` when `path` may be opened; otherwise the English reason it may not
 * (the caller translates the message around it).
 */
export function notebookPathProblem(path: string): string | null {
  if (path === '') {
    return 'it is empty';
  }
  if (revealText(path) !== path) {
    return 'it holds control or invisible characters';
  }
  if (path.startsWith('/') || path.includes('\\')) {
    return 'it is absolute or uses backslashes';
  }
  if (/^[^/]*:/.test(path)) {
    return 'it names a drive or a scheme';
  }
  if (path.split('/').some(segment => segment === '..' || segment === '.')) {
    return "it has a '..' or '.' segment";
  }
  if (PathExt.normalize(path) !== path) {
    return 'it is not in normal form';
  }
  if (!path.endsWith('.ipynb')) {
    return 'it is not a notebook (.ipynb)';
  }
  return null;
}
