/* The bucket page's upload form, sent with XMLHttpRequest so that the browser's progress shows in a <progress>. */
'use strict';
{
    function send(form) {
        const progress = form.querySelector('progress');
        const status = form.querySelector('.nats-upload-status');
        const button = form.querySelector('input[type=submit]');
        const request = new XMLHttpRequest();
        request.open('POST', form.action);
        request.setRequestHeader('X-Requested-With', 'XMLHttpRequest');  // answered with JSON
        request.upload.addEventListener('progress', function(event) {
            if (event.lengthComputable) {
                progress.max = event.total;
                progress.value = event.loaded;
                status.textContent = Math.floor(100 * event.loaded / event.total) + ' % sent';
            }
        });
        request.upload.addEventListener('load', function() {
            progress.removeAttribute('value');  // indeterminate: Django now stores the files in NATS
            status.textContent = 'Storing in the bucket…';
        });
        request.addEventListener('load', function() {
            let answer = {};
            try {
                answer = JSON.parse(request.responseText);
            } catch (error) {
                answer = {error: 'The server answered ' + request.status + ' ' + request.statusText + '.'};
            }
            if (answer.redirect) {
                window.location.assign(answer.redirect);  // the page, with what was stored in its messages
            } else {
                status.textContent = answer.error || 'The upload failed.';
                button.disabled = false;
            }
        });
        request.addEventListener('error', function() {
            status.textContent = 'The upload failed: the connection to the server was lost.';
            button.disabled = false;
        });
        const data = new FormData(form);
        button.disabled = true;
        progress.hidden = false;
        progress.value = 0;
        status.textContent = '0 % sent';
        request.send(data);
    }

    document.addEventListener('DOMContentLoaded', function() {
        const form = document.getElementById('nats-upload');
        if (form) {
            form.addEventListener('submit', function(event) {
                event.preventDefault();
                send(form);
            });
        }
    });
}
