import { LabIcon } from '@jupyterlab/ui-components';

import auditTrailSvgstr from '../style/icons/audit-trail.svg';

/** The panel's icon in the left sidebar, the palette and the settings editor. */
export const auditTrailIcon = new LabIcon({
  name: 'jupyter-audit:audit-trail',
  svgstr: auditTrailSvgstr
});
