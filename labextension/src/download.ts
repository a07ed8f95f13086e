/**
 * Saving an evidence bundle from the server (`GET export?…`) as a file: the
 * server's exact bytes in a Blob, under a name `exportFileName` made safe.
 * The server records the access (`trail.accessed`).
 */
import type { ServerConnection } from '@jupyterlab/services';

import { requestAPIText } from './request';
import type { ExportTarget } from './query';
import { exportFileName, exportPath } from './query';

/** Download the bundle of one trace or of a filtered set; rejects with an AuditAPIError. */
export async function downloadBundle(
  target: ExportTarget,
  serverSettings: ServerConnection.ISettings
): Promise<string> {
  const text = await requestAPIText(exportPath(target), {}, serverSettings);
  const name = exportFileName(target);
  const url = URL.createObjectURL(
    new Blob([text], { type: 'application/json' })
  );
  try {
    const link = document.createElement('a');
    link.href = url;
    link.download = name;
    link.style.display = 'none';
    document.body.appendChild(link);
    link.click();
    link.remove();
  } finally {
    // Let the click's download start before the URL goes.
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }
  return name;
}
