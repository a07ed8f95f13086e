/**
 * Small React parts the panel's views share. Text only: React escapes it.
 */
import * as React from 'react';

import type { TranslationBundle } from '@jupyterlab/translation';

import { errorMessage } from './labels';
import type { AuditAPIError } from './request';

export function ErrorBox(props: {
  error: AuditAPIError;
  trans: TranslationBundle;
}): React.ReactElement {
  return (
    <div className="jp-AuditTrail-error" role="alert">
      {errorMessage(props.error, props.trans)}
    </div>
  );
}
