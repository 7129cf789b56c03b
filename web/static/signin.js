// The sign-in form: the time zone defaults to this browser's; a restaurant must give its tenant id.
const form = document.getElementById('signin');
if (form) {
  const zone = form.querySelector('#timezone');
  if (zone && !zone.value) zone.value = Intl.DateTimeFormat().resolvedOptions().timeZone || '';
  const tenant = form.querySelector('#tenant');
  const sync = () => {
    tenant.required = form.querySelector('input[name="role"]:checked')?.value === 'tenant';
  };
  for (const radio of form.querySelectorAll('input[name="role"]')) radio.addEventListener('change', sync);
  sync();
}
