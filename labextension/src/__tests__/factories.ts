/**
 * What several specs build: a trace summary with defaults, and the traces
 * list as the panel draws it (static markup, as React escapes it).
 */
import * as React from 'react';
import { renderToStaticMarkup } from 'react-dom/server';

import { nullTranslator } from '@jupyterlab/translation';

import type { AuditTrailModel } from '../model';
import type { ITraceFilter, ITraceSummary } from '../tokens';
import { TraceList } from '../traceListView';
import type { IViewServices } from '../viewServices';

export const trans = nullTranslator.load('jupyter-audit');

/** A trace summary: `fields` over empty defaults. */
export function trace(fields: Partial<ITraceSummary>): ITraceSummary {
  return {
    trace_id: 't',
    kernel_id: null,
    notebook: null,
    started_at: '2024-01-01T00:00:00Z',
    last_at: '2024-01-01T00:00:00Z',
    events: 0,
    cells: 0,
    operations: 0,
    users: [],
    status: 'ended',
    ...fields
  };
}

/** The traces list's markup for `traces` under `filter`. */
export function traceListHtml(
  traces: ITraceSummary[],
  filter: ITraceFilter = {}
): string {
  const model = {
    filter,
    traces,
    tracesError: null,
    userGeneration: 0,
    hasMoreTraces: false,
    loadingMore: false
  } as unknown as AuditTrailModel;
  const services = {
    trans,
    languages: null,
    openCell: null,
    download: async () => undefined
  } as unknown as IViewServices;
  return renderToStaticMarkup(
    React.createElement(TraceList, { model, services })
  );
}
